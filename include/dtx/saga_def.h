/// @file
/// Saga definitions (docs/saga.md "Saga definitions"): a saga's flow registered on the coordinator
/// by name and version (the "BPM configuration" of seed 000), so that applications submit only the
/// name and the payloads. dtx::SagaDefinitions puts, reads and lists definitions; dtx::SagaByName
/// submits a saga from the newest version.
///
/// @code
///   dtx::Client client("http://127.0.0.1:36789/api/dtmsvr");
///   dtx::SagaDefinitions defs(client);
///   auto put = defs.Put("order", R"({"services": {"pay": "http://pay:8082/payment"},
///       "steps": [{"name": "charge", "action": "{pay}/charge", "compensate": "{pay}/refund"}]})");
///   if (!put.ok()) return;                     // kInvalidArgument: the 400 names the problem
///   dtx::SagaByName saga(client, "order");     // gid "": the coordinator makes one
///   saga.SetPayload("charge", R"({"amount":30})")
///       .SetBusinessKeys({"account:42"})
///       .SetWaitResult(true);
///   dtx::Status s = saga.Submit();             // saga.gid() is set on success
/// @endcode
///
/// Thread-safety: SagaDefinitions holds only a reference to the Client (thread-safe itself) and
/// may be shared; a SagaByName is a plain builder owned by one thread. The Client must outlive
/// both.
///
/// How it fails: every call returns the Client's Status (dtx/client.h): 400 -> kInvalidArgument
/// (the coordinator's message names the problem: an unknown service, a cycle, an unknown step in
/// payloads ...), 404 -> kNotFound (no definition of that name), 409 -> kConflict (with
/// wait_result: the saga rolled back or has not finished; query it), 503 -> kUnavailable. A name
/// outside 1..64 bytes of [A-Za-z0-9_.-], a definition over 64 KiB, both payloads and input, or
/// business keys outside their limits fail with kInvalidArgument before anything is sent. An
/// answer that does not parse is kInternal. Include policy: as dtx/client.h.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "dtx/business_keys.h"
#include "dtx/client.h"
#include "dtx/export.h"
#include "dtx/status.h"

namespace dtx {

/// The coordinator's limits on definitions (src/api/saga_defs.h).
inline constexpr size_t kMaxSagaNameBytes = 64;
/// ... bytes of one definition.
inline constexpr size_t kMaxSagaDefinitionBytes = 64 * 1024;

/// The answer to SagaDefinitions::Put.
struct DTX_EXPORT SagaDefinitionPut {
  std::string name;      ///< the definition's name
  int64_t version = 0;   ///< the newest version after the put (1, 2, ...)
  bool changed = false;  ///< false: an identical definition was the newest one already (a no-op)
};

/// One kept version of a definition (the coordinator keeps the 32 newest).
struct DTX_EXPORT SagaDefinitionVersion {
  int64_t version = 0;         ///< 1, 2, ...
  int64_t create_time_ms = 0;  ///< Unix time in milliseconds
  std::string definition;      ///< the definition as stored, JSON text
};

/// One entry of SagaDefinitions::List.
struct DTX_EXPORT SagaDefinitionSummary {
  std::string name;         ///< the definition's name
  int64_t version = 0;      ///< its newest version
  std::string update_time;  ///< of the newest version, as the coordinator formats it (UTC)
};

/// A page of SagaDefinitions::List.
struct DTX_EXPORT SagaDefinitionPage {
  std::vector<SagaDefinitionSummary> sagas;  ///< by last change, newest first
  std::string next_position;                 ///< empty on the last page
};

/// Registers and reads saga definitions (PUT/GET /api/dtx/sagas...); see the file description.
class DTX_EXPORT SagaDefinitions {
 public:
  /// Calls go through `client` (its extra headers, TLS settings and request_timeout apply), to
  /// the coordinator whose API prefix the client was given (".../api/dtmsvr" -> ".../api/dtx").
  explicit SagaDefinitions(Client& client) : client_(client) {}

  /// PUT /api/dtx/sagas/{name}: `definition_json` is the definition (JSON text, docs/saga.md). A
  /// changed definition makes a new version; an identical one changes nothing.
  Result<SagaDefinitionPut> Put(const std::string& name, const std::string& definition_json);
  /// GET /api/dtx/sagas/{name}: every kept version, oldest first. kNotFound for an unknown name.
  Result<std::vector<SagaDefinitionVersion>> Get(const std::string& name);
  /// GET /api/dtx/sagas: the names with their newest version; `limit` 1..1000, `position` from a
  /// previous page's next_position (empty: the first page).
  Result<SagaDefinitionPage> List(int limit = 100, const std::string& position = {});

 private:
  Client& client_;
};

/// A saga started from the newest version of a definition (POST /api/dtx/sagas/{name}/submit).
class DTX_EXPORT SagaByName {
 public:
  /// An empty gid lets the coordinator make one (gid() returns it after Submit).
  SagaByName(Client& client, std::string name, std::string gid = {});

  /// The gid (after a successful Submit: the coordinator's when none was given).
  const std::string& gid() const { return gid_; }
  /// The definition's name.
  const std::string& name() const { return name_; }

  /// The request body of step `step` (by its name in the definition). Steps without one get "".
  SagaByName& SetPayload(std::string step, std::string payload);
  /// One JSON object (text) sent to every step instead of per-step payloads.
  SagaByName& SetInput(std::string json_object);
  /// Submit returns after one processing round: ok means the saga succeeded; kConflict that it
  /// rolled back or is still running (query to know which).
  SagaByName& SetWaitResult(bool wait_result);
  /// Business keys (dtx/business_keys.h): the saga waits on the coordinator while an earlier
  /// unfinished transaction holds one of them (OnBusy::kReject: it fails at once instead).
  SagaByName& SetBusinessKeys(std::vector<std::string> keys, OnBusy on_busy = OnBusy::kWait);

  /// The exact JSON body that Submit sends.
  std::string BuildBody() const;
  /// Checks the request and POSTs it. Ok only for 200 {"dtm_result":"SUCCESS","gid":...}.
  Status Submit();

 private:
  Status Validate() const;

  Client& client_;
  std::string name_;
  std::string gid_;
  std::map<std::string, std::string> payloads_;
  std::optional<std::string> input_;
  bool wait_result_ = false;
  std::vector<std::string> business_keys_;
  OnBusy on_busy_ = OnBusy::kWait;
};

/// Checks a definition name as the coordinator does: 1..kMaxSagaNameBytes bytes of
/// [A-Za-z0-9_.-]. kInvalidArgument naming the problem.
DTX_EXPORT Status CheckSagaName(const std::string& name);

}  // namespace dtx
