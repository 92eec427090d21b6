// The defaults of the retention and monitoring operations of Store (store.h): a store that does
// not offer them answers kUnimplemented, inline.
#include "store/store.h"

namespace dtx::store {

void Store::CreateTakingKeys(core::TransSnapshot trans, Callback<bool> done) {
  Create(std::move(trans), [done = std::move(done)](Status s) {
    if (s.ok()) {
      done(false);
    } else {
      done(std::move(s));
    }
  });
}

void Store::HasKeyWaiters(Callback<bool> done) { done(true); }

void Store::LoadAttempts(std::string /*gid*/, Callback<std::vector<AttemptRow>> done) {
  done(Status::Unimplemented("this store does not keep call attempts"));
}

void Store::CountDue(int64_t /*now_ms*/, int64_t /*cap*/, Callback<int64_t> done) {
  done(Status::Unimplemented("this store does not count due transactions"));
}

void Store::DeleteFinished(int64_t /*before_ms*/, int /*limit*/, Callback<RetentionCount> done) {
  done(Status::Unimplemented("this store does not delete finished transactions"));
}

void Store::DeleteKvBefore(std::string /*cat*/, int64_t /*before_ms*/, int /*limit*/,
                           Callback<int64_t> done) {
  done(Status::Unimplemented("this store does not delete key-value rows"));
}

}  // namespace dtx::store
