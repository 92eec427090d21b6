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

TEST(MetricsTest, LabelSetsAreBounded) {
  Metrics m;
  for (size_t i = 0; i < Metrics::kMaxSeriesPerFamily + 50; ++i) {
    m.RecordBranch("saga", std::to_string(i), "action", true);
  }
  std::string text = m.Render();
  EXPECT_NE(text.find("dtm_branch_process_total{overflow=\"true\"} 50"), std::string::npos);
}

}  // namespace
}  // namespace dtx::ops
