#include "ops/metrics.h"

#include <fmt/format.h>

namespace dtx::ops {
namespace {

std::string Escape(const std::string& v) {
  std::string out;
  out.reserve(v.size());
  for (char c : v) {
    if (c == '\\' || c == '"') {
      out += '\\';
      out += c;
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

// Buckets of a participant call, in seconds: 1 ms .. 30 s (the request timeout is capped below it).
Histogram* NewCallHistogram() {
  return new Histogram(
      {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30});
}

void RenderHistogram(std::string& out, const std::string& name, const std::string& labels,
                     const Histogram& h) {
  const Histogram::Snapshot s = h.Read();
  const std::string sep = labels.empty() ? "" : ",";
  for (size_t i = 0; i < s.cumulative.size(); ++i) {
    const std::string le = i < s.bounds.size() ? fmt::format("{}", s.bounds[i]) : "+Inf";
    out += fmt::format("{}_bucket{{{}{}le=\"{}\"}} {}\n", name, labels, sep, le, s.cumulative[i]);
  }
  const std::string braces = labels.empty() ? "" : "{" + labels + "}";
  out += fmt::format("{}_sum{} {}\n{}_count{} {}\n", name, braces, s.sum, name, braces, s.count);
}

}  // namespace

Metrics::Metrics() {
  api_total_.name = "dtm_server_process_total";
  api_total_.help = "All request received by dtm";
  api_total_.type = "counter";
  api_duration_.name = "dtm_server_response_duration";
  api_duration_.help = "The request durations of a dtm server api";
  api_duration_.type = "summary";
  trans_total_.name = "dtm_transaction_process_total";
  trans_total_.help = "All transactions processed by dtm";
  trans_total_.type = "counter";
  trans_duration_.name = "dtm_transaction_handled_duration";
  trans_duration_.help =
      "Histogram of handling latency of the transaction that handled by the server";
  trans_duration_.type = "summary";
  branch_total_.name = "dtm_branch_process_total";
  branch_total_.help = "All branches processed by dtm";
  branch_total_.type = "counter";
  operator_total_.name = "dtx_operator_actions_total";
  operator_total_.help = "Operator actions through the admin API, by action";
  operator_total_.type = "counter";
  notify_total_.name = "dtx_notification_attempts_total";
  notify_total_.help = "Notification attempts by outcome (delivered, failed, exhausted)";
  notify_total_.type = "counter";
  retention_total_.name = "dtx_retention_deleted_rows_total";
  retention_total_.help = "Rows deleted by the retention job, by table";
  retention_total_.type = "counter";
}

Metrics::Series& Metrics::Get(Family& f, const std::string& labels) {
  std::lock_guard<std::mutex> lock(f.mu);
  auto it = f.series.find(labels);
  if (it != f.series.end()) return *it->second;
  if (f.series.size() >= kMaxSeriesPerFamily) {
    auto& overflow = f.series["overflow=\"true\""];
    if (!overflow) overflow = std::make_unique<Series>();
    return *overflow;
  }
  auto& s = f.series[labels];
  s = std::make_unique<Series>();
  return *s;
}

void Metrics::RecordApi(const std::string& api, bool ok, double seconds) {
  Get(api_total_,
      fmt::format("type=\"http\",api=\"{}\",status=\"{}\"", Escape(api), ok ? "ok" : "fail"))
      .count.fetch_add(1, std::memory_order_relaxed);
  auto& d = Get(api_duration_, fmt::format("type=\"http\",api=\"{}\"", Escape(api)));
  d.count.fetch_add(1, std::memory_order_relaxed);
  d.sum_us.fetch_add(static_cast<uint64_t>(seconds * 1e6), std::memory_order_relaxed);
}

void Metrics::RecordTransaction(const std::string& model, bool ok, double seconds) {
  Get(trans_total_, fmt::format("model=\"{}\",status=\"{}\"", Escape(model), ok ? "ok" : "fail"))
      .count.fetch_add(1, std::memory_order_relaxed);
  auto& d = Get(trans_duration_, fmt::format("model=\"{}\"", Escape(model)));
  d.count.fetch_add(1, std::memory_order_relaxed);
  d.sum_us.fetch_add(static_cast<uint64_t>(seconds * 1e6), std::memory_order_relaxed);
}

const std::string& Metrics::BoundedBranchId(const std::string& v) {
  static const std::string kOther = "other";
  std::lock_guard<std::mutex> lock(branch_ids_mu_);
  auto it = branch_ids_.find(v);
  if (it != branch_ids_.end()) return *it;
  if (branch_ids_.size() >= kMaxBranchIds) return kOther;
  return *branch_ids_.insert(v).first;  // set nodes are stable: the reference stays valid
}

void Metrics::RecordBranch(const std::string& model, const std::string& branch_id,
                           const std::string& op, bool ok) {
  const std::string& id = BoundedBranchId(branch_id);
  Get(branch_total_, fmt::format("model=\"{}\",branchid=\"{}\",branchtype=\"{}\",status=\"{}\"",
                                 Escape(model), Escape(id), Escape(op), ok ? "ok" : "fail"))
      .count.fetch_add(1, std::memory_order_relaxed);
}

void Metrics::RecordOperatorAction(const std::string& action) {
  Get(operator_total_, fmt::format("action=\"{}\"", Escape(action)))
      .count.fetch_add(1, std::memory_order_relaxed);
}

void Metrics::RecordBranchCall(const std::string& host, double seconds) {
  Histogram* h = nullptr;
  {
    std::lock_guard<std::mutex> lock(hosts_mu_);
    auto it = hosts_.find(host);
    if (it == hosts_.end()) {
      // Beyond kMaxHosts distinct hosts (plus "other"), new hosts share one series.
      const std::string& key = hosts_.size() >= kMaxHosts ? std::string("other") : host;
      auto& slot = hosts_[key];
      if (!slot) slot.reset(NewCallHistogram());
      h = slot.get();
    } else {
      h = it->second.get();
    }
  }
  h->Observe(seconds);
}

void Metrics::RecordNotification(const std::string& outcome) {
  Get(notify_total_, fmt::format("outcome=\"{}\"", Escape(outcome)))
      .count.fetch_add(1, std::memory_order_relaxed);
}

void Metrics::RecordRetentionDeleted(const std::string& table, uint64_t rows) {
  Get(retention_total_, fmt::format("table=\"{}\"", Escape(table)))
      .count.fetch_add(rows, std::memory_order_relaxed);
}

void Metrics::AddHistogram(std::string name, std::string help, const Histogram* h) {
  std::lock_guard<std::mutex> lock(gauges_mu_);
  histograms_.push_back({std::move(name), std::move(help), h});
}

void Metrics::AddGauge(std::string name, std::string help, std::function<double()> read) {
  std::lock_guard<std::mutex> lock(gauges_mu_);
  gauges_.push_back({std::move(name), std::move(help), std::move(read)});
}

std::string Metrics::Render() const {
  std::string out;
  out += "# HELP dtm_server_info The information of this dtm server.\n";
  out += "# TYPE dtm_server_info gauge\n";
  out += "dtm_server_info{gin_version=\"dtx\",grpc_version=\"none\"} 1\n";
  for (const Family* f : {&api_total_, &api_duration_, &trans_total_, &trans_duration_,
                          &branch_total_, &operator_total_, &notify_total_, &retention_total_}) {
    out += fmt::format("# HELP {} {}\n# TYPE {} {}\n", f->name, f->help, f->name, f->type);
    std::lock_guard<std::mutex> lock(f->mu);
    for (const auto& [labels, s] : f->series) {
      if (f->type == "summary") {
        out += fmt::format("{}_sum{{{}}} {}\n", f->name, labels,
                           static_cast<double>(s->sum_us.load()) / 1e6);
        out += fmt::format("{}_count{{{}}} {}\n", f->name, labels, s->count.load());
      } else {
        out += fmt::format("{}{{{}}} {}\n", f->name, labels, s->count.load());
      }
    }
  }
  {
    const char* name = "dtx_branch_call_duration_seconds";
    out += fmt::format(
        "# HELP {} Participant call latency by host (at most {} hosts, then host=\"other\")\n"
        "# TYPE {} histogram\n",
        name, kMaxHosts, name);
    std::lock_guard<std::mutex> lock(hosts_mu_);
    for (const auto& [host, h] : hosts_) {
      RenderHistogram(out, name, fmt::format("host=\"{}\"", Escape(host)), *h);
    }
  }
  std::lock_guard<std::mutex> lock(gauges_mu_);
  for (const auto& e : histograms_) {
    out += fmt::format("# HELP {} {}\n# TYPE {} histogram\n", e.name, e.help, e.name);
    RenderHistogram(out, e.name, "", *e.h);
  }
  for (const auto& g : gauges_) {
    out += fmt::format("# HELP {} {}\n# TYPE {} gauge\n{} {}\n", g.name, g.help, g.name, g.name,
                       g.read());
  }
  return out;
}

}  // namespace dtx::ops
