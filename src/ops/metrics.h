// Metrics: counters and duration summaries exposed in the Prometheus text format at /api/metrics,
// keeping DTM's six dtm_* families (PROTOCOL.md §2.3) so existing dashboards work, plus dtx_*
// gauges.
//
// Thread-safe: every method may be called from any thread. Label sets are small and bounded (route
// names, modes, statuses, branch ids); a new label set takes a mutex once, later increments are
// atomic.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace dtx::ops {

class Metrics {
 public:
  Metrics();

  // dtm_server_process_total{type="http",api,status} and dtm_server_response_duration{type,api}.
  void RecordApi(const std::string& api, bool ok, double seconds);
  // dtm_transaction_process_total{model,status} and dtm_transaction_handled_duration{model}.
  void RecordTransaction(const std::string& model, bool ok, double seconds);
  // dtm_branch_process_total{model,branchid,branchtype,status}.
  void RecordBranch(const std::string& model, const std::string& branch_id, const std::string& op,
                    bool ok);

  // dtx_operator_actions_total{action}: operator actions through the admin API (issue 13).
  void RecordOperatorAction(const std::string& action);

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

  Family api_total_;
  Family api_duration_;
  Family trans_total_;
  Family trans_duration_;
  Family branch_total_;
  Family operator_total_;
  struct Gauge {
    std::string name, help;
    std::function<double()> read;
  };
  mutable std::mutex gauges_mu_;
  std::vector<Gauge> gauges_;
};

}  // namespace dtx::ops
