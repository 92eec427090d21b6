// Metrics: counters and duration summaries exposed in the Prometheus text format at /api/metrics,
// keeping DTM's six dtm_* families (PROTOCOL.md §2.3) so existing dashboards work, plus dtx_*
// gauges.
//
// Thread-safe: every method may be called from any thread. Every label value comes from a fixed set
// (route templates, modes, ops, outcomes) or is capped (branch ids, hosts: the first kMax* distinct
// values get their own, later ones share "other"), and each family keeps at most
// kMaxSeriesPerFamily label sets, so no request can grow /metrics without bound. A new label set
// takes a mutex once, later increments are atomic.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "util/histogram.h"

namespace dtx::ops {

class Metrics {
 public:
  Metrics();

  // dtm_server_process_total{type="http",api,status} and dtm_server_response_duration{type,api}.
  // `api` is a route name or template from the routes' fixed set ("submit", "topic/{name}",
  // "unknown"), never request text.
  void RecordApi(const std::string& api, bool ok, double seconds);
  // dtm_transaction_process_total{model,status} and dtm_transaction_handled_duration{model}.
  void RecordTransaction(const std::string& model, bool ok, double seconds);
  // dtm_branch_process_total{model,branchid,branchtype,status}. Branch ids are the clients' (a
  // tcc/xa registerBranch names its own): at most kMaxBranchIds distinct ids get their own value,
  // later ones are counted under branchid="other".
  void RecordBranch(const std::string& model, const std::string& branch_id, const std::string& op,
                    bool ok);
  static constexpr size_t kMaxBranchIds = 100;

  // dtx_operator_actions_total{action}: operator actions through the admin API (issue 13).
  void RecordOperatorAction(const std::string& action);

  // dtx_branch_call_duration_seconds{host}: the latency of one participant call (branch op,
  // check-back, notification attempt) by the host:port of its URL. At most kMaxHosts distinct
  // hosts get a series; calls to further hosts are counted under host="other".
  void RecordBranchCall(const std::string& host, double seconds);
  static constexpr size_t kMaxHosts = 100;

  // dtx_notification_attempts_total{outcome}: delivered, failed (to be retried) or exhausted (the
  // last attempt of the schedule failed).
  void RecordNotification(const std::string& outcome);

  // dtx_retention_deleted_rows_total{table}: rows deleted by the retention job (transactions,
  // branches, attempts, audit).
  void RecordRetentionDeleted(const std::string& table, uint64_t rows);

  // A histogram owned elsewhere (e.g. the store's batch sizes), rendered at exposition time. `h`
  // must outlive this Metrics.
  void AddHistogram(std::string name, std::string help, const Histogram* h);

  // A gauge read at exposition time (e.g. active transactions, store queue length).
  void AddGauge(std::string name, std::string help, std::function<double()> read);

  // Prometheus text exposition format 0.0.4.
  std::string Render() const;

  // Limit on distinct label sets per family; beyond it increments go to a label set "overflow".
  static constexpr size_t kMaxSeriesPerFamily = 10'000;

 private:
  struct Series {
    std::atomic<uint64_t> count{0};
    std::atomic<uint64_t> sum_us{0};
  };
  struct Family {
    std::string name;
    std::string help;
    std::string type;  // counter | summary
    mutable std::mutex mu;
    std::map<std::string, std::unique_ptr<Series>> series;  // key: rendered label set
  };
  Series& Get(Family& f, const std::string& labels);
  // `v` if it is one of the first kMaxBranchIds distinct branch ids seen, else "other".
  const std::string& BoundedBranchId(const std::string& v);

  Family api_total_;
  Family api_duration_;
  Family trans_total_;
  Family trans_duration_;
  Family branch_total_;
  Family operator_total_;
  Family notify_total_;
  Family retention_total_;
  mutable std::mutex branch_ids_mu_;
  std::set<std::string, std::less<>> branch_ids_;  // guarded by branch_ids_mu_
  mutable std::mutex hosts_mu_;
  std::map<std::string, std::unique_ptr<Histogram>> hosts_;  // guarded by hosts_mu_
  struct ExternalHistogram {
    std::string name, help;
    const Histogram* h;
  };
  std::vector<ExternalHistogram> histograms_;  // guarded by gauges_mu_
  struct Gauge {
    std::string name, help;
    std::function<double()> read;
  };
  mutable std::mutex gauges_mu_;
  std::vector<Gauge> gauges_;
};

}  // namespace dtx::ops
