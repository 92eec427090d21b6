// Unit tests of the tcc/xa state machine (core::Step for tcc and xa), driven on explicit time
// through a tiny engine stand-in like saga_test.cc's: it starts rounds, answers calls with given
// classes, applies every Decision.update to a separate "stored" copy (checking the compare-and-set
// status) and checks after each decision that the update alone reproduces the machine's view.
// Covers PROTOCOL.md §1.4, §1.7, §1.8, §3.4, §3.5 and checklist items TCC-01..03, 05, 06, 08 and
// XA-01..03.

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "core/machine.h"
#include "core/machine_test_util.h"
#include "core/model.h"
#include "core/retry_policy.h"

namespace dtx::core {
namespace {

using namespace test_util;  // NOLINT(google-build-using-namespace)

constexpr int64_t kTimeout = 35'000;  // server default timeout_to_fail

// Rows of branch k (0-based, in registration order): branches[2k] = cancel (xa: rollback),
// branches[2k+1] = confirm (xa: commit).
constexpr size_t Undo(size_t k) { return 2 * k; }
constexpr size_t Do(size_t k) { return 2 * k + 1; }

std::string ConfirmUrl(const std::string& id) { return "http://busi/TransOutConfirm?b=" + id; }
std::string CancelUrl(const std::string& id) { return "http://busi/TransOutRevert?b=" + id; }
const std::string kXaUrl = "http://busi/xa";

// A tcc or xa transaction as prepare + registerBranch would store it (§1.7 step 2, §1.8 step 2),
// in status `status`.
TransSnapshot MakeTrans(TransType type, const std::vector<std::string>& branch_ids,
                        GlobalStatus status, TransOptions options = {},
                        const Settings& settings = {}) {
  TransSnapshot s;
  s.global.id = 1;
  s.global.gid = type == TransType::kXa ? "xa-gid-1" : "tcc-gid-1";
  s.global.trans_type = type;
  s.global.status = status;
  s.global.create_time_ms = kT0;
  s.global.update_time_ms = kT0;
  const int64_t i0 = InitialIntervalMs(options, settings);
  s.global.next_cron_interval_ms = i0;
  s.global.next_cron_time_ms = kT0 + i0;
  s.global.options = std::move(options);
  int64_t id = 1;
  const bool xa = type == TransType::kXa;
  for (const std::string& branch_id : branch_ids) {
    for (int phase = 0; phase < 2; ++phase) {
      BranchRow& row = s.branches.emplace_back();
      row.id = id++;
      row.gid = s.global.gid;
      row.branch_id = branch_id;
      if (xa) {
        row.op = phase == 0 ? "rollback" : "commit";
        row.url = kXaUrl;
      } else {
        row.op = phase == 0 ? "cancel" : "confirm";
        row.url = phase == 0 ? CancelUrl(branch_id) : ConfirmUrl(branch_id);
        row.bin_data = R"({"amount":30})";
      }
      row.create_time_ms = kT0;
      row.update_time_ms = kT0;
    }
  }
  return s;
}

TransSnapshot MakeTcc(const std::vector<std::string>& ids, GlobalStatus status,
                      TransOptions options = {}) {
  return MakeTrans(TransType::kTcc, ids, status, std::move(options));
}
TransSnapshot MakeXa(const std::vector<std::string>& ids, GlobalStatus status,
                     TransOptions options = {}) {
  return MakeTrans(TransType::kXa, ids, status, std::move(options));
}

const TransUpdate::BranchUpdate* FindBranchUpdate(const TransUpdate& u, const std::string& id,
                                                  const std::string& op) {
  for (const auto& b : u.branches) {
    if (b.branch_id == id && b.op == op) return &b;
  }
  return nullptr;
}

// The engine stand-in (see machine_test_util.h).
class TccRun : public test_util::MachineRun<TccRun> {
 public:
  using MachineRun::MachineRun;

  // The (branch_id, op) of every call made, in order.
  std::vector<std::string> CalledRows() const {
    std::vector<std::string> out;
    for (size_t i : call_log()) out.push_back(row(i).branch_id + "/" + row(i).op);
    return out;
  }

  bool CheckCall(size_t i, GlobalStatus /*before*/) const {
    EXPECT_LT(i, machine().branches.size());
    if (i >= machine().branches.size()) return false;
    ExpectNotInFlight(i);
    EXPECT_FALSE(machine().branches[i].url.empty()) << "a call for an empty URL";
    EXPECT_EQ(machine().branches[i].status, BranchStatus::kPrepared) << "a call for a finished row";
    return true;
  }
};

// ---------------------------------------------------------------------------------------------------
// TCC: submitted -> confirms.

// TCC-01
TEST(TccTest, ConfirmsRunInReverseOrderOneAtATimeThenSucceed) {
  TccRun run(MakeTcc({"01", "02"}, GlobalStatus::kSubmitted));
  Decision d = run.Start();
  EXPECT_EQ(d.calls, Calls{Do(1)}) << "the last registered confirm first";
  EXPECT_FALSE(d.update.has_value()) << "starting a round changes nothing";
  EXPECT_FALSE(d.round_over);

  d = run.Answer(Do(1), CallClass::kSuccess);
  EXPECT_EQ(d.calls, Calls{Do(0)});
  EXPECT_FALSE(d.round_over);
  ASSERT_TRUE(d.update.has_value());
  EXPECT_EQ(d.update->gid, "tcc-gid-1");
  EXPECT_EQ(d.update->expected_status, GlobalStatus::kSubmitted);
  EXPECT_FALSE(d.update->new_status.has_value());
  ExpectWakeup(*d.update, run.now, kI0);  // SUCCESS: reset to I0, renews the lease
  ASSERT_EQ(d.update->branches.size(), 1u);
  const auto& bu = d.update->branches[0];
  EXPECT_EQ(bu.branch_id, "02");
  EXPECT_EQ(bu.op, "confirm");
  EXPECT_EQ(bu.status, BranchStatus::kSucceed);
  EXPECT_EQ(bu.attempts, 1);
  EXPECT_EQ(bu.finish_time_ms, run.now);
  EXPECT_FALSE(bu.last_error.has_value());

  d = run.Answer(Do(0), CallClass::kSuccess);
  EXPECT_TRUE(d.calls.empty());
  EXPECT_TRUE(d.round_over);
  ASSERT_TRUE(d.update.has_value());
  EXPECT_EQ(d.update->expected_status, GlobalStatus::kSubmitted);
  EXPECT_EQ(d.update->new_status, GlobalStatus::kSucceed);
  EXPECT_EQ(d.update->finish_time_ms, run.now);
  EXPECT_FALSE(d.update->rollback_reason.has_value());
  EXPECT_FALSE(d.update->rollback_time_ms.has_value());
  const auto* c01 = FindBranchUpdate(*d.update, "01", "confirm");
  ASSERT_NE(c01, nullptr);
  EXPECT_EQ(c01->status, BranchStatus::kSucceed);

  EXPECT_EQ(run.status(), GlobalStatus::kSucceed);
  EXPECT_EQ(run.BranchStatuses(), (Statuses{kP, kS, kP, kS}));
  EXPECT_EQ(run.CalledRows(), (std::vector<std::string>{"02/confirm", "01/confirm"}));
  EXPECT_EQ(run.max_in_flight(), 1u);
  EXPECT_EQ(run.row(Undo(0)).attempts, 0);
  EXPECT_EQ(run.row(Undo(1)).attempts, 0);
  EXPECT_EQ(run.global().rollback_reason, "");
}

// TCC-06
TEST(TccTest, NestedBranchIsConfirmedBeforeItsParent) {
  TccRun run(MakeTcc({"01", "02", "0201"}, GlobalStatus::kSubmitted));
  run.Start();
  run.FinishAll(CallClass::kSuccess);
  EXPECT_EQ(run.status(), GlobalStatus::kSucceed);
  EXPECT_EQ(run.CalledRows(),
            (std::vector<std::string>{"0201/confirm", "02/confirm", "01/confirm"}));
  EXPECT_EQ(run.max_in_flight(), 1u);
}

TEST(TccTest, NestedBranchIsCancelledBeforeItsParent) {
  TccRun run(MakeTcc({"01", "02", "0201"}, GlobalStatus::kAborting));
  run.Start();
  run.FinishAll(CallClass::kSuccess);
  EXPECT_EQ(run.status(), GlobalStatus::kFailed);
  EXPECT_EQ(run.CalledRows(), (std::vector<std::string>{"0201/cancel", "02/cancel", "01/cancel"}));
}

// A confirm already succeeded in an earlier round (e.g. before a crash) is not called again.
TEST(TccTest, OnlyConfirmsStillPreparedAreCalled) {
  TransSnapshot snap = MakeTcc({"01", "02", "03"}, GlobalStatus::kSubmitted);
  snap.branches[Do(2)].status = BranchStatus::kSucceed;
  TccRun run(snap);
  EXPECT_EQ(run.Start().calls, Calls{Do(1)});
  run.FinishAll(CallClass::kSuccess);
  EXPECT_EQ(run.status(), GlobalStatus::kSucceed);
  EXPECT_EQ(run.call_log(), (Calls{Do(1), Do(0)}));
}

// TCC-05
TEST(TccTest, ConfirmFailureIsRetriedWithBackoffNeverRolledBack) {
  TccRun run(MakeTcc({"01", "02"}, GlobalStatus::kSubmitted));
  run.Start();
  const std::string body = R"({"dtm_result":"FAILURE","message":"no"})";
  Decision d = run.Answer(Do(1), CallClass::kFailure, body);
  EXPECT_TRUE(d.calls.empty()) << "the first non-SUCCESS answer ends the round";
  EXPECT_TRUE(d.round_over);
  ASSERT_TRUE(d.update.has_value());
  EXPECT_EQ(d.update->expected_status, GlobalStatus::kSubmitted);
  EXPECT_FALSE(d.update->new_status.has_value()) << "never turned into a rollback";
  EXPECT_FALSE(d.update->rollback_reason.has_value());
  ExpectWakeup(*d.update, run.now, 2 * kI0);
  const auto* c02 = FindBranchUpdate(*d.update, "02", "confirm");
  ASSERT_NE(c02, nullptr);
  EXPECT_FALSE(c02->status.has_value()) << "the row stays prepared";
  EXPECT_EQ(c02->attempts, 1);
  EXPECT_EQ(c02->last_error, "FAILURE: " + body);
  EXPECT_EQ(run.status(), GlobalStatus::kSubmitted);
  EXPECT_EQ(run.BranchStatuses(), (Statuses{kP, kP, kP, kP}));

  d = run.StartDueRound();
  EXPECT_EQ(d.calls, Calls{Do(1)});
  d = run.Answer(Do(1), CallClass::kFailure);
  ExpectWakeup(*d.update, run.now, 4 * kI0);
  EXPECT_EQ(run.status(), GlobalStatus::kSubmitted);

  d = run.StartDueRound();
  EXPECT_EQ(d.calls, Calls{Do(1)});
  d = run.Answer(Do(1), CallClass::kSuccess);
  ExpectWakeup(*d.update, run.now, kI0);  // SUCCESS resets
  EXPECT_EQ(d.calls, Calls{Do(0)});
  run.FinishAll(CallClass::kSuccess);
  EXPECT_EQ(run.status(), GlobalStatus::kSucceed);
  EXPECT_EQ(run.BranchStatuses(), (Statuses{kP, kS, kP, kS}));
  EXPECT_EQ(run.row(Do(1)).attempts, 3);
  EXPECT_EQ(run.call_log(), (Calls{Do(1), Do(1), Do(1), Do(0)}));
  EXPECT_EQ(run.global().rollback_reason, "");
}

TEST(TccTest, ConfirmErrorBacksOffAndOngoingKeepsTheInterval) {
  TccRun run(MakeTcc({"01"}, GlobalStatus::kSubmitted));
  run.Start();
  Decision d = run.Answer(Do(0), CallClass::kError);
  EXPECT_TRUE(d.round_over);
  ExpectWakeup(*d.update, run.now, 2 * kI0);
  EXPECT_EQ(run.row(Do(0)).last_error, "ERROR: HTTP 500: internal error");
  run.StartDueRound();
  d = run.Answer(Do(0), CallClass::kOngoing);
  EXPECT_TRUE(d.round_over);
  ExpectWakeup(*d.update, run.now, 2 * kI0);
  EXPECT_EQ(run.row(Do(0)).last_error, std::string("ONGOING: ") + R"({"dtm_result":"ONGOING"})");
  EXPECT_EQ(run.status(), GlobalStatus::kSubmitted);
  run.StartDueRound();
  run.FinishAll(CallClass::kSuccess);
  EXPECT_EQ(run.status(), GlobalStatus::kSucceed);
  EXPECT_EQ(run.row(Do(0)).attempts, 3);
}

TEST(TccTest, EmptyConfirmUrlSucceedsWithoutACall) {
  TransSnapshot snap = MakeTcc({"01", "02"}, GlobalStatus::kSubmitted);
  snap.branches[Do(1)].url = "";
  TccRun run(snap);
  Decision d = run.Start();
  EXPECT_EQ(d.calls, Calls{Do(0)});
  ASSERT_TRUE(d.update.has_value());
  const auto* c02 = FindBranchUpdate(*d.update, "02", "confirm");
  ASSERT_NE(c02, nullptr);
  EXPECT_EQ(c02->status, BranchStatus::kSucceed);
  EXPECT_FALSE(c02->attempts.has_value()) << "no call, no attempt";
  run.FinishAll(CallClass::kSuccess);
  EXPECT_EQ(run.status(), GlobalStatus::kSucceed);
  EXPECT_EQ(run.call_log(), Calls{Do(0)});
}

TEST(TccTest, AllConfirmUrlsEmptySucceedsAtStart) {
  TransSnapshot snap = MakeTcc({"01", "02"}, GlobalStatus::kSubmitted);
  snap.branches[Do(0)].url = "";
  snap.branches[Do(1)].url = "";
  TccRun run(snap);
  Decision d = run.Start();
  EXPECT_TRUE(d.calls.empty());
  EXPECT_TRUE(d.round_over);
  ASSERT_TRUE(d.update.has_value());
  EXPECT_EQ(d.update->new_status, GlobalStatus::kSucceed);
  EXPECT_EQ(run.BranchStatuses(), (Statuses{kP, kS, kP, kS}));
}

TEST(TccTest, SubmittedWithoutBranchesSucceeds) {
  TccRun run(MakeTcc({}, GlobalStatus::kSubmitted));
  Decision d = run.Start();
  EXPECT_TRUE(d.calls.empty());
  EXPECT_TRUE(d.round_over);
  ASSERT_TRUE(d.update.has_value());
  EXPECT_EQ(d.update->expected_status, GlobalStatus::kSubmitted);
  EXPECT_EQ(d.update->new_status, GlobalStatus::kSucceed);
  EXPECT_EQ(d.update->finish_time_ms, run.now);
}

// ---------------------------------------------------------------------------------------------------
// TCC: aborting -> cancels.

// TCC-02
TEST(TccTest, AbortCancelsBothBranchesInReverseOrder) {
  TransSnapshot snap = MakeTcc({"01", "02"}, GlobalStatus::kAborting);
  snap.global.rollback_reason = "try of 02 failed";  // stored by the abort request
  TccRun run(snap);
  Decision d = run.Start();
  EXPECT_EQ(d.calls, Calls{Undo(1)}) << "the branch whose try failed is cancelled too";
  EXPECT_FALSE(d.update.has_value());

  d = run.Answer(Undo(1), CallClass::kSuccess);
  EXPECT_EQ(d.calls, Calls{Undo(0)});
  ASSERT_TRUE(d.update.has_value());
  EXPECT_EQ(d.update->expected_status, GlobalStatus::kAborting);
  EXPECT_FALSE(d.update->new_status.has_value());
  const auto* x02 = FindBranchUpdate(*d.update, "02", "cancel");
  ASSERT_NE(x02, nullptr);
  EXPECT_EQ(x02->status, BranchStatus::kSucceed);

  d = run.Answer(Undo(0), CallClass::kSuccess);
  EXPECT_TRUE(d.round_over);
  ASSERT_TRUE(d.update.has_value());
  EXPECT_EQ(d.update->expected_status, GlobalStatus::kAborting);
  EXPECT_EQ(d.update->new_status, GlobalStatus::kFailed);
  EXPECT_EQ(d.update->finish_time_ms, run.now);
  EXPECT_FALSE(d.update->rollback_reason.has_value()) << "the stored reason stands";

  EXPECT_EQ(run.status(), GlobalStatus::kFailed);
  EXPECT_EQ(run.global().rollback_reason, "try of 02 failed");
  EXPECT_EQ(run.BranchStatuses(), (Statuses{kS, kP, kS, kP}));
  EXPECT_EQ(run.CalledRows(), (std::vector<std::string>{"02/cancel", "01/cancel"}));
  EXPECT_EQ(run.max_in_flight(), 1u);
}

// TCC-08
TEST(TccTest, CancelOngoingStaysAbortingThenFailsNextRound) {
  TccRun run(MakeTcc({"01", "02"}, GlobalStatus::kAborting));
  run.Start();
  Decision d = run.Answer(Undo(1), CallClass::kOngoing);
  EXPECT_TRUE(d.calls.empty()) << "cancel 01 waits for cancel 02";
  EXPECT_TRUE(d.round_over);
  ASSERT_TRUE(d.update.has_value());
  EXPECT_EQ(d.update->expected_status, GlobalStatus::kAborting);
  EXPECT_FALSE(d.update->new_status.has_value());
  ExpectWakeup(*d.update, run.now, kI0);  // ONGOING keeps the interval
  EXPECT_EQ(run.status(), GlobalStatus::kAborting);
  EXPECT_EQ(run.BranchStatuses(), (Statuses{kP, kP, kP, kP}));

  d = run.StartDueRound();
  EXPECT_EQ(d.calls, Calls{Undo(1)});
  EXPECT_EQ(run.Answer(Undo(1), CallClass::kSuccess).calls, Calls{Undo(0)});
  d = run.Answer(Undo(0), CallClass::kSuccess);
  EXPECT_TRUE(d.round_over);
  EXPECT_EQ(d.update->new_status, GlobalStatus::kFailed);
  EXPECT_EQ(run.status(), GlobalStatus::kFailed);
  EXPECT_EQ(run.BranchStatuses(), (Statuses{kS, kP, kS, kP}));
  EXPECT_EQ(run.row(Undo(1)).attempts, 2);
}

TEST(TccTest, CancelOngoingKeepsABackedOffInterval) {
  TransSnapshot snap = MakeTcc({"01"}, GlobalStatus::kAborting);
  snap.global.next_cron_interval_ms = 40'000;  // after two errors in earlier rounds
  TccRun run(snap);
  run.Start();
  Decision d = run.Answer(Undo(0), CallClass::kOngoing);
  ASSERT_TRUE(d.update.has_value());
  ExpectWakeup(*d.update, run.now, 40'000);
}

TEST(TccTest, CancelFailureIsRetriedNeverGivenUp) {
  TccRun run(MakeTcc({"01"}, GlobalStatus::kAborting));
  run.Start();
  Decision d = run.Answer(Undo(0), CallClass::kFailure);
  EXPECT_TRUE(d.round_over);
  EXPECT_FALSE(d.update->new_status.has_value());
  ExpectWakeup(*d.update, run.now, 2 * kI0);
  EXPECT_EQ(run.status(), GlobalStatus::kAborting);
  run.StartDueRound();
  run.FinishAll(CallClass::kSuccess);
  EXPECT_EQ(run.status(), GlobalStatus::kFailed);
  EXPECT_EQ(run.BranchStatuses(), (Statuses{kS, kP}));
}

TEST(TccTest, AbortedWithoutBranchesFails) {
  TccRun run(MakeTcc({}, GlobalStatus::kAborting));
  Decision d = run.Start();
  EXPECT_TRUE(d.round_over);
  ASSERT_TRUE(d.update.has_value());
  EXPECT_EQ(d.update->expected_status, GlobalStatus::kAborting);
  EXPECT_EQ(d.update->new_status, GlobalStatus::kFailed);
}

// ---------------------------------------------------------------------------------------------------
// TCC: prepared and timeout_to_fail.

TEST(TccTest, PreparedBeforeTheTimeoutWaitsUntilExactlyCreatePlusTimeout) {
  TccRun run(MakeTcc({"01", "02"}, GlobalStatus::kPrepared));
  run.now = kT0 + kI0;  // the first recovery pass, at create + I0
  Decision d = run.Start();
  EXPECT_TRUE(d.calls.empty());
  EXPECT_TRUE(d.round_over);
  ASSERT_TRUE(d.update.has_value());
  EXPECT_EQ(d.update->expected_status, GlobalStatus::kPrepared);
  EXPECT_FALSE(d.update->new_status.has_value());
  EXPECT_EQ(d.update->next_cron_time_ms, kT0 + kTimeout) << "no jitter: exactly at the timeout";
  EXPECT_EQ(d.update->next_cron_interval_ms, kI0) << "the interval is kept";
  EXPECT_TRUE(d.update->branches.empty());

  run.now = kT0 + kTimeout - 1;  // an early round (e.g. resetNextCronTime): nothing to write
  d = run.Restart();
  EXPECT_TRUE(d.calls.empty());
  EXPECT_TRUE(d.round_over);
  EXPECT_FALSE(d.update.has_value());
  EXPECT_EQ(run.status(), GlobalStatus::kPrepared);
  EXPECT_TRUE(run.call_log().empty());
}

// TCC-03
// The decision that leaves prepared ends its round (no calls); the engine starts the next round
// from the store at once, so rows registered on another coordinator are not missed (dtx-sim).
TEST(TccTest, PreparedTimeoutAbortsThenTheNextRoundCancels) {
  TccRun run(MakeTcc({"01", "02"}, GlobalStatus::kPrepared));
  Decision d = run.StartDueRound();
  EXPECT_EQ(run.now, kT0 + kI0);
  EXPECT_TRUE(d.round_over);
  d = run.StartDueRound();
  EXPECT_EQ(run.now, kT0 + kTimeout);
  EXPECT_TRUE(d.calls.empty());
  EXPECT_TRUE(d.round_over);
  ASSERT_TRUE(d.update.has_value());
  EXPECT_EQ(d.update->expected_status, GlobalStatus::kPrepared);
  EXPECT_EQ(d.update->new_status, GlobalStatus::kAborting);
  EXPECT_EQ(d.update->rollback_reason, "Timeout after 35 seconds");
  EXPECT_EQ(d.update->rollback_time_ms, run.now);
  EXPECT_FALSE(d.update->finish_time_ms.has_value());
  EXPECT_EQ(run.Restart().calls, Calls{Undo(1)});

  EXPECT_EQ(run.Answer(Undo(1), CallClass::kSuccess).calls, Calls{Undo(0)});
  d = run.Answer(Undo(0), CallClass::kSuccess);
  EXPECT_TRUE(d.round_over);
  EXPECT_EQ(d.update->expected_status, GlobalStatus::kAborting);
  EXPECT_EQ(d.update->new_status, GlobalStatus::kFailed);
  EXPECT_EQ(run.status(), GlobalStatus::kFailed);
  EXPECT_EQ(run.global().rollback_reason, "Timeout after 35 seconds");
  EXPECT_EQ(run.BranchStatuses(), (Statuses{kS, kP, kS, kP}));
  EXPECT_EQ(run.CalledRows(), (std::vector<std::string>{"02/cancel", "01/cancel"}));
}

TEST(TccTest, CustomTimeoutToFailIsHonouredAndNamed) {
  TransOptions o;
  o.timeout_to_fail_s = 120;
  TccRun run(MakeTcc({"01"}, GlobalStatus::kPrepared, o));
  run.now = kT0 + kTimeout;  // the server default has passed, the transaction's own has not
  Decision d = run.Start();
  EXPECT_TRUE(d.calls.empty());
  ASSERT_TRUE(d.update.has_value());
  EXPECT_FALSE(d.update->new_status.has_value());
  EXPECT_EQ(d.update->next_cron_time_ms, kT0 + 120'000);
  d = run.StartDueRound();
  EXPECT_EQ(run.now, kT0 + 120'000);
  EXPECT_EQ(d.update->new_status, GlobalStatus::kAborting);
  EXPECT_EQ(d.update->rollback_reason, "Timeout after 120 seconds");
  EXPECT_TRUE(d.calls.empty());
  EXPECT_EQ(run.Restart().calls, Calls{Undo(0)});
}

TEST(TccTest, ServerTimeoutSettingIsTheDefault) {
  Settings settings;
  settings.timeout_to_fail_ms = 5'000;
  TccRun run(MakeTrans(TransType::kTcc, {"01"}, GlobalStatus::kPrepared, {}, settings), settings);
  run.now = kT0 + 4'999;
  Decision d = run.Start();
  EXPECT_TRUE(d.calls.empty());
  EXPECT_EQ(d.update->next_cron_time_ms, kT0 + 5'000);
  run.now = kT0 + 5'000;
  d = run.Restart();
  EXPECT_EQ(d.update->rollback_reason, "Timeout after 5 seconds");
  EXPECT_EQ(run.Restart().calls, Calls{Undo(0)});
}

TEST(TccTest, TimeoutKeepsAReasonAlreadySet) {
  TransSnapshot snap = MakeTcc({"01"}, GlobalStatus::kPrepared);
  snap.global.rollback_reason = "set earlier";
  TccRun run(snap);
  run.now = kT0 + kTimeout;
  Decision d = run.Start();
  EXPECT_EQ(d.update->new_status, GlobalStatus::kAborting);
  EXPECT_FALSE(d.update->rollback_reason.has_value());
  run.FinishAll(CallClass::kSuccess);
  EXPECT_EQ(run.global().rollback_reason, "set earlier");
}

TEST(TccTest, PreparedWithoutBranchesTimesOutToFailed) {
  TccRun run(MakeTcc({}, GlobalStatus::kPrepared));
  run.now = kT0 + kTimeout;
  Decision d = run.Start();
  EXPECT_TRUE(d.calls.empty());
  EXPECT_TRUE(d.round_over);
  ASSERT_TRUE(d.update.has_value());
  EXPECT_EQ(d.update->expected_status, GlobalStatus::kPrepared);
  EXPECT_EQ(d.update->new_status, GlobalStatus::kAborting);
  EXPECT_EQ(d.update->rollback_reason, "Timeout after 35 seconds");
  EXPECT_EQ(d.update->rollback_time_ms, run.now);
  // The decision that leaves prepared ends the round; the next one (started at once by the
  // engine, from the store) finishes the abort.
  d = run.Start();
  EXPECT_TRUE(d.calls.empty());
  ASSERT_TRUE(d.update.has_value());
  EXPECT_EQ(d.update->expected_status, GlobalStatus::kAborting);
  EXPECT_EQ(d.update->new_status, GlobalStatus::kFailed);
  EXPECT_EQ(d.update->finish_time_ms, run.now);
}

// ---------------------------------------------------------------------------------------------------
// TCC: external changes.

// An abort can only arrive while prepared, but an operator's forceAbort may switch a submitted
// transaction to aborting mid-round: no cancel starts while a confirm is in flight.
TEST(TccTest, ExternalAbortMidRoundWaitsForTheConfirmInFlight) {
  TccRun run(MakeTcc({"01", "02"}, GlobalStatus::kSubmitted));
  run.Start();
  run.SetStatusExternally(GlobalStatus::kAborting);
  Decision d = run.Answer(Do(1), CallClass::kSuccess);
  EXPECT_EQ(d.update->expected_status, GlobalStatus::kAborting);
  EXPECT_EQ(d.calls, Calls{Undo(1)});
  run.FinishAll(CallClass::kSuccess);
  EXPECT_EQ(run.status(), GlobalStatus::kFailed);
  EXPECT_EQ(run.BranchStatuses(), (Statuses{kS, kP, kS, kS}));
  EXPECT_EQ(run.max_in_flight(), 1u);
}

TEST(TccTest, ResultAfterAnExternalFinalStateChangesNothing) {
  TccRun run(MakeTcc({"01", "02"}, GlobalStatus::kSubmitted));
  run.Start();
  run.SetStatusExternally(GlobalStatus::kFailed);  // forceStop while confirm 02 is in flight
  const size_t updates = run.updates();
  Decision d = run.Answer(Do(1), CallClass::kSuccess);
  EXPECT_FALSE(d.update.has_value());
  EXPECT_TRUE(d.calls.empty());
  EXPECT_TRUE(d.round_over);
  EXPECT_EQ(run.updates(), updates);
  EXPECT_EQ(run.BranchStatuses(), (Statuses{kP, kP, kP, kP}));
}

TEST(TccDeathTest, ResultForACallNotInFlightIsABug) {
  TransSnapshot snap = MakeTcc({"01"}, GlobalStatus::kSubmitted);
  Round round;
  (void)Step(snap, round, Event{}, Settings{}, kT0);
  Event ev;
  ev.kind = Event::Kind::kResult;
  ev.branch_index = Undo(0);  // never called
  EXPECT_DEATH((void)Step(snap, round, ev, Settings{}, kT0), "not in flight");
}

// ---------------------------------------------------------------------------------------------------
// XA.

// XA-01
TEST(XaTest, CommitsRunInRegistrationOrderOneAtATime) {
  TccRun run(MakeXa({"01", "02", "03"}, GlobalStatus::kSubmitted));
  Decision d = run.Start();
  EXPECT_EQ(d.calls, Calls{Do(0)});
  EXPECT_EQ(run.row(Do(0)).op, "commit");
  EXPECT_EQ(run.row(Do(0)).url, kXaUrl);
  d = run.Answer(Do(0), CallClass::kSuccess);
  EXPECT_EQ(d.calls, Calls{Do(1)});
  ASSERT_TRUE(d.update.has_value());
  const auto* c01 = FindBranchUpdate(*d.update, "01", "commit");
  ASSERT_NE(c01, nullptr);
  EXPECT_EQ(c01->status, BranchStatus::kSucceed);
  EXPECT_EQ(run.Answer(Do(1), CallClass::kSuccess).calls, Calls{Do(2)});
  d = run.Answer(Do(2), CallClass::kSuccess);
  EXPECT_TRUE(d.round_over);
  EXPECT_EQ(d.update->expected_status, GlobalStatus::kSubmitted);
  EXPECT_EQ(d.update->new_status, GlobalStatus::kSucceed);
  EXPECT_EQ(run.BranchStatuses(), (Statuses{kP, kS, kP, kS, kP, kS}));
  EXPECT_EQ(run.CalledRows(), (std::vector<std::string>{"01/commit", "02/commit", "03/commit"}));
  EXPECT_EQ(run.max_in_flight(), 1u);
}

// XA-02
TEST(XaTest, AbortRollsBackInRegistrationOrder) {
  TransSnapshot snap = MakeXa({"01", "02"}, GlobalStatus::kAborting);
  snap.global.rollback_reason = "business error";
  TccRun run(snap);
  EXPECT_EQ(run.Start().calls, Calls{Undo(0)});
  EXPECT_EQ(run.Answer(Undo(0), CallClass::kSuccess).calls, Calls{Undo(1)});
  Decision d = run.Answer(Undo(1), CallClass::kSuccess);
  EXPECT_TRUE(d.round_over);
  EXPECT_EQ(d.update->expected_status, GlobalStatus::kAborting);
  EXPECT_EQ(d.update->new_status, GlobalStatus::kFailed);
  EXPECT_EQ(run.BranchStatuses(), (Statuses{kS, kP, kS, kP}));
  EXPECT_EQ(run.CalledRows(), (std::vector<std::string>{"01/rollback", "02/rollback"}));
  EXPECT_EQ(run.global().rollback_reason, "business error");
}

// XA-02
TEST(XaTest, TimeoutRollsBack) {
  TccRun run(MakeXa({"01", "02"}, GlobalStatus::kPrepared));
  run.now = kT0 + kTimeout;
  Decision d = run.Start();
  EXPECT_EQ(d.update->expected_status, GlobalStatus::kPrepared);
  EXPECT_EQ(d.update->new_status, GlobalStatus::kAborting);
  EXPECT_EQ(d.update->rollback_reason, "Timeout after 35 seconds");
  EXPECT_TRUE(d.calls.empty());
  EXPECT_EQ(run.Restart().calls, Calls{Undo(0)});
  run.FinishAll(CallClass::kSuccess);
  EXPECT_EQ(run.status(), GlobalStatus::kFailed);
  EXPECT_EQ(run.CalledRows(), (std::vector<std::string>{"01/rollback", "02/rollback"}));
}

// XA-02
TEST(XaTest, CommitOngoingKeepsSubmittedUntilALaterRound) {
  TccRun run(MakeXa({"01", "02"}, GlobalStatus::kSubmitted));
  run.Start();
  Decision d = run.Answer(Do(0), CallClass::kOngoing);
  EXPECT_TRUE(d.calls.empty()) << "commit 02 waits for commit 01";
  EXPECT_TRUE(d.round_over);
  EXPECT_FALSE(d.update->new_status.has_value());
  ExpectWakeup(*d.update, run.now, kI0);
  EXPECT_EQ(run.status(), GlobalStatus::kSubmitted);
  EXPECT_EQ(run.BranchStatuses(), (Statuses{kP, kP, kP, kP}));

  d = run.StartDueRound();
  EXPECT_EQ(d.calls, Calls{Do(0)});
  EXPECT_EQ(run.Answer(Do(0), CallClass::kSuccess).calls, Calls{Do(1)});
  d = run.Answer(Do(1), CallClass::kSuccess);
  EXPECT_EQ(d.update->new_status, GlobalStatus::kSucceed);
  EXPECT_EQ(run.CalledRows(), (std::vector<std::string>{"01/commit", "01/commit", "02/commit"}));
}

TEST(XaTest, CommitFailureIsRetriedNeverRolledBack) {
  TccRun run(MakeXa({"01"}, GlobalStatus::kSubmitted));
  run.Start();
  Decision d = run.Answer(Do(0), CallClass::kFailure);
  EXPECT_FALSE(d.update->new_status.has_value());
  ExpectWakeup(*d.update, run.now, 2 * kI0);
  EXPECT_EQ(run.status(), GlobalStatus::kSubmitted);
  run.StartDueRound();
  run.FinishAll(CallClass::kSuccess);
  EXPECT_EQ(run.status(), GlobalStatus::kSucceed);
  EXPECT_EQ(run.CalledRows(), (std::vector<std::string>{"01/commit", "01/commit"}));
}

// XA-03
TEST(XaTest, PreparedWithoutBranchesTimesOutToFailed) {
  TccRun run(MakeXa({}, GlobalStatus::kPrepared));
  Decision d = run.StartDueRound();  // at create + I0: not yet
  EXPECT_TRUE(d.round_over);
  EXPECT_EQ(run.status(), GlobalStatus::kPrepared);
  EXPECT_EQ(run.global().next_cron_time_ms, kT0 + kTimeout);
  d = run.StartDueRound();
  EXPECT_EQ(run.now, kT0 + kTimeout);
  EXPECT_TRUE(d.calls.empty());
  EXPECT_TRUE(d.round_over);
  ASSERT_TRUE(d.update.has_value());
  EXPECT_EQ(d.update->expected_status, GlobalStatus::kPrepared);
  EXPECT_EQ(d.update->new_status, GlobalStatus::kAborting);
  EXPECT_EQ(d.update->rollback_reason, "Timeout after 35 seconds");
  d = run.Start();
  EXPECT_TRUE(d.round_over);
  EXPECT_EQ(run.status(), GlobalStatus::kFailed);
}

}  // namespace
}  // namespace dtx::core
