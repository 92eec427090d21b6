#include "ops/metrics.h"

#include <gtest/gtest.h>

namespace dtx::ops {
namespace {

TEST(MetricsTest, RendersDtmFamilies) {
  Metrics m;
  m.RecordApi("submit", true, 0.002);
  m.RecordApi("submit", false, 0.001);
  m.RecordTransaction("saga", true, 0.01);
  m.RecordBranch("saga", "01", "action", true);
  m.AddGauge("dtx_active_transactions", "Transactions being processed", [] { return 3.0; });
  std::string text = m.Render();
  for (const char* family : {"dtm_server_info", "dtm_server_process_total",
                             "dtm_server_response_duration", "dtm_transaction_process_total",
                             "dtm_transaction_handled_duration", "dtm_branch_process_total"}) {
    EXPECT_NE(text.find(std::string("# TYPE ") + family), std::string::npos) << family;
  }
  EXPECT_NE(text.find("dtm_server_process_total{type=\"http\",api=\"submit\",status=\"ok\"} 1"),
            std::string::npos);
  EXPECT_NE(text.find("dtm_server_process_total{type=\"http\",api=\"submit\",status=\"fail\"} 1"),
            std::string::npos);
  EXPECT_NE(text.find("dtm_server_response_duration_count{type=\"http\",api=\"submit\"} 2"),
            std::string::npos);
  EXPECT_NE(text.find("dtx_active_transactions 3"), std::string::npos);
}

// How many series of `family` (lines "family{...} N") the exposition holds.
size_t SeriesOf(const std::string& text, const std::string& family) {
  size_t n = 0;
  for (size_t at = text.find(family + "{"); at != std::string::npos;
       at = text.find(family + "{", at + 1)) {
    if (at == 0 || text[at - 1] == '\n') ++n;
  }
  return n;
}

TEST(MetricsTest, LabelSetsAreBounded) {
  // The family's own cap (a backstop behind the per-label ones): model values are the callers'.
  Metrics m;
  for (size_t i = 0; i < Metrics::kMaxSeriesPerFamily + 50; ++i) {
    m.RecordBranch("m" + std::to_string(i), "01", "action", true);
  }
  std::string text = m.Render();
  EXPECT_NE(text.find("dtm_branch_process_total{overflow=\"true\"} 50"), std::string::npos);
  EXPECT_EQ(SeriesOf(text, "dtm_branch_process_total"), Metrics::kMaxSeriesPerFamily + 1);
}

TEST(MetricsTest, BranchIdsAreCappedThenOther) {
  Metrics m;
  // At the limit: every id has its own series, no "other".
  for (size_t i = 0; i < Metrics::kMaxBranchIds; ++i) {
    m.RecordBranch("tcc", "b" + std::to_string(i), "confirm", true);
  }
  std::string text = m.Render();
  EXPECT_EQ(SeriesOf(text, "dtm_branch_process_total"), Metrics::kMaxBranchIds);
  EXPECT_EQ(text.find("branchid=\"other\""), std::string::npos);
  // Beyond it: 500 new ids share one series; a known id keeps its own.
  for (size_t i = 0; i < 500; ++i) {
    m.RecordBranch("tcc", "new" + std::to_string(i), "confirm", true);
  }
  m.RecordBranch("tcc", "b0", "confirm", true);
  text = m.Render();
  EXPECT_EQ(SeriesOf(text, "dtm_branch_process_total"), Metrics::kMaxBranchIds + 1);
  EXPECT_NE(text.find("dtm_branch_process_total{model=\"tcc\",branchid=\"other\","
                      "branchtype=\"confirm\",status=\"ok\"} 500"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("dtm_branch_process_total{model=\"tcc\",branchid=\"b0\","
                      "branchtype=\"confirm\",status=\"ok\"} 2"),
            std::string::npos);
  EXPECT_EQ(text.find("branchid=\"new"), std::string::npos);
}

TEST(MetricsTest, BranchCallHistogramByHost) {
  Metrics m;
  m.RecordBranchCall("127.0.0.1:8081", 0.0004);  // first bucket (le=0.001)
  m.RecordBranchCall("127.0.0.1:8081", 0.2);     // le=0.25
  m.RecordBranchCall("127.0.0.1:8081", 100);     // beyond every bound: only +Inf
  std::string text = m.Render();
  EXPECT_NE(text.find("# TYPE dtx_branch_call_duration_seconds histogram"), std::string::npos);
  const std::string p = "dtx_branch_call_duration_seconds_bucket{host=\"127.0.0.1:8081\",le=";
  EXPECT_NE(text.find(p + "\"0.001\"} 1\n"), std::string::npos) << text;
  EXPECT_NE(text.find(p + "\"0.1\"} 1\n"), std::string::npos) << text;
  EXPECT_NE(text.find(p + "\"0.25\"} 2\n"), std::string::npos) << text;
  EXPECT_NE(text.find(p + "\"30\"} 2\n"), std::string::npos) << text;
  EXPECT_NE(text.find(p + "\"+Inf\"} 3\n"), std::string::npos) << text;
  EXPECT_NE(text.find("dtx_branch_call_duration_seconds_count{host=\"127.0.0.1:8081\"} 3"),
            std::string::npos);
  EXPECT_NE(text.find("dtx_branch_call_duration_seconds_sum{host=\"127.0.0.1:8081\"} 100.2004"),
            std::string::npos)
      << text;
}

TEST(MetricsTest, HostLabelsAreCappedThenOther) {
  Metrics m;
  for (size_t i = 0; i < Metrics::kMaxHosts; ++i) {
    m.RecordBranchCall("h" + std::to_string(i) + ":80", 0.01);
  }
  EXPECT_EQ(m.Render().find("{host=\"other\""), std::string::npos) << "at the limit: no other";
  for (size_t i = Metrics::kMaxHosts; i < Metrics::kMaxHosts + 7; ++i) {
    m.RecordBranchCall("h" + std::to_string(i) + ":80", 0.01);
  }
  std::string text = m.Render();
  size_t series = 0;
  for (size_t at = 0;
       (at = text.find("dtx_branch_call_duration_seconds_count{", at)) != std::string::npos; ++at) {
    ++series;
  }
  EXPECT_EQ(series, Metrics::kMaxHosts + 1) << "100 hosts and other";
  EXPECT_NE(text.find("dtx_branch_call_duration_seconds_count{host=\"other\"} 7"),
            std::string::npos);
  EXPECT_EQ(text.find("host=\"h100:80\""), std::string::npos);
}

TEST(MetricsTest, ExternalHistogramCountersAndOutcomes) {
  Metrics m;
  Histogram batch({1, 8, 64});
  batch.Observe(1);
  batch.Observe(5);
  batch.Observe(500);
  m.AddHistogram("dtx_store_batch_ops", "Operations per committed batch", &batch);
  m.RecordNotification("delivered");
  m.RecordNotification("failed");
  m.RecordNotification("failed");
  m.RecordRetentionDeleted("transactions", 500);
  m.RecordRetentionDeleted("transactions", 3);
  std::string text = m.Render();
  EXPECT_NE(text.find("dtx_store_batch_ops_bucket{le=\"1\"} 1\n"), std::string::npos) << text;
  EXPECT_NE(text.find("dtx_store_batch_ops_bucket{le=\"8\"} 2\n"), std::string::npos);
  EXPECT_NE(text.find("dtx_store_batch_ops_bucket{le=\"64\"} 2\n"), std::string::npos);
  EXPECT_NE(text.find("dtx_store_batch_ops_bucket{le=\"+Inf\"} 3\n"), std::string::npos);
  EXPECT_NE(text.find("dtx_store_batch_ops_sum 506\n"), std::string::npos);
  EXPECT_NE(text.find("dtx_notification_attempts_total{outcome=\"failed\"} 2"), std::string::npos);
  EXPECT_NE(text.find("dtx_retention_deleted_rows_total{table=\"transactions\"} 503"),
            std::string::npos);
}

}  // namespace
}  // namespace dtx::ops
