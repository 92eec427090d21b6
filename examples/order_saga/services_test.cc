// Tests of the example services' idempotency guard (services.h): retries, null compensation,
// anti-hanging, business failures; through real HTTP calls shaped like the coordinator's.
#include "examples/order_saga/services.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <boost/json.hpp>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <string>

#include "examples/common/demo_support.h"

namespace order_saga {
namespace {

namespace json = boost::json;

class ServiceFixture {
 public:
  explicit ServiceFixture(const std::string& name) : name_(name) {
    char tmpl[] = "/tmp/order-saga-test-XXXXXX";
    dir_ = mkdtemp(tmpl);
    auto service = Service::Open(name, dir_ + "/" + name + ".db");
    EXPECT_TRUE(service.ok()) << service.status().ToString();
    service_ = std::move(*service);
    service_->Register(server_);
    EXPECT_TRUE(server_.Start().ok());
  }
  ~ServiceFixture() {
    server_.Stop();
    service_.reset();
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
  }

  // One call like the coordinator's: POST <path>?gid=..&op=..; returns the status (0 on error).
  int Call(const std::string& path, const std::string& gid, const std::string& op,
           const std::string& body) {
    std::string url =
        server_.base_url() + path + "?branch_id=01&gid=" + gid + "&op=" + op + "&trans_type=saga";
    auto r = dtx_examples::HttpCall("POST", url, body);
    last_body = r.ok() ? r->body : "";
    return r.ok() ? r->status : 0;
  }
  int Action(const std::string& gid, const OrderRequest& o) {
    return Call(EndpointsOf(name_).action, gid, "action", EncodeOrder(o));
  }
  int Compensate(const std::string& gid, const OrderRequest& o) {
    return Call(EndpointsOf(name_).compensate, gid, "compensate", EncodeOrder(o));
  }
  json::object State() { return json::parse(*service_->StateJson()).as_object(); }

  std::string last_body;

 private:
  std::string name_;
  std::string dir_;
  std::unique_ptr<Service> service_;
  dtx::ParticipantServer server_;
};

int64_t Balance(const json::object& state, const std::string& user) {
  for (const auto& row : state.at("accounts").as_array()) {
    if (row.at("user").as_string() == user) return row.at("balance").as_int64();
  }
  return -1;
}
int64_t Available(const json::object& state, const std::string& item) {
  for (const auto& row : state.at("stock").as_array()) {
    if (row.at("item").as_string() == item) return row.at("available").as_int64();
  }
  return -1;
}

const OrderRequest kOrder{"alice", "widget", 2, 3000, "1 Harbour Road"};

TEST(OrderSagaServices, ActionAndCompensationAreIdempotent) {
  ServiceFixture payment("payment");
  const int64_t before = Balance(payment.State(), "alice");
  EXPECT_EQ(payment.Action("g1", kOrder), 200);
  EXPECT_EQ(payment.Action("g1", kOrder), 200);  // a retry
  EXPECT_EQ(Balance(payment.State(), "alice"), before - 3000);
  EXPECT_EQ(payment.Compensate("g1", kOrder), 200);
  EXPECT_EQ(payment.Compensate("g1", kOrder), 200);  // a retry
  EXPECT_EQ(Balance(payment.State(), "alice"), before);
  EXPECT_EQ(payment.Action("g1", kOrder), 200);  // a late duplicate after the compensation
  EXPECT_EQ(Balance(payment.State(), "alice"), before);
}

TEST(OrderSagaServices, CompensationBeforeActionBlocksTheAction) {
  ServiceFixture inventory("inventory");
  const int64_t before = Available(inventory.State(), "widget");
  EXPECT_EQ(inventory.Compensate("g2", kOrder), 200);  // null compensation
  EXPECT_EQ(Available(inventory.State(), "widget"), before);
  EXPECT_EQ(inventory.Action("g2", kOrder), 200);  // hanging action: answered, not applied
  EXPECT_EQ(Available(inventory.State(), "widget"), before);
  EXPECT_TRUE(inventory.State().at("reservations").as_array().empty());
}

TEST(OrderSagaServices, OutOfStockIsAFailureAndItsCompensationIsNull) {
  ServiceFixture inventory("inventory");
  const int64_t before = Available(inventory.State(), "widget");
  OrderRequest big = kOrder;
  big.quantity = before + 1;
  EXPECT_EQ(inventory.Action("g3", big), 409);
  EXPECT_NE(inventory.last_body.find("FAILURE"), std::string::npos);
  EXPECT_NE(inventory.last_body.find("out of stock"), std::string::npos);
  EXPECT_EQ(inventory.Compensate("g3", big), 200);
  EXPECT_EQ(Available(inventory.State(), "widget"), before);
  // The stock is still usable by the next order.
  EXPECT_EQ(inventory.Action("g4", kOrder), 200);
  EXPECT_EQ(Available(inventory.State(), "widget"), before - 2);
}

TEST(OrderSagaServices, InsufficientBalanceIsAFailure) {
  ServiceFixture payment("payment");
  OrderRequest rich = kOrder;
  rich.amount = Balance(payment.State(), "alice") + 1;
  EXPECT_EQ(payment.Action("g5", rich), 409);
  EXPECT_NE(payment.last_body.find("insufficient balance"), std::string::npos);
  OrderRequest stranger = kOrder;
  stranger.user = "mallory";
  EXPECT_EQ(payment.Action("g6", stranger), 409);
}

TEST(OrderSagaServices, OrderLifecycleAndBadCalls) {
  ServiceFixture order("order");
  EXPECT_EQ(order.Action("g7", kOrder), 200);
  EXPECT_EQ(order.State().at("orders").as_array().at(0).at("status").as_string(), "pending");
  EXPECT_EQ(order.Compensate("g7", kOrder), 200);
  EXPECT_EQ(order.State().at("orders").as_array().at(0).at("status").as_string(), "failed");
  // Not a call from the coordinator: no gid, or the wrong op.
  EXPECT_EQ(order.Call("/order/create", "", "action", EncodeOrder(kOrder)), 400);
  EXPECT_EQ(order.Call("/order/create", "g8", "compensate", EncodeOrder(kOrder)), 400);
  // A payload that cannot be parsed fails the saga (it would never parse on a retry either).
  EXPECT_EQ(order.Call("/order/create", "g9", "action", "{not json"), 409);
  EXPECT_EQ(order.State().at("orders").as_array().size(), 1u);
}

TEST(OrderSagaServices, ShippingCancel) {
  ServiceFixture shipping("shipping");
  EXPECT_EQ(shipping.Action("g10", kOrder), 200);
  EXPECT_EQ(shipping.Compensate("g10", kOrder), 200);
  EXPECT_EQ(shipping.State().at("shipments").as_array().at(0).at("status").as_string(),
            "cancelled");
}

TEST(OrderSagaServices, UnknownServiceIsRefused) {
  auto s = Service::Open("billing", "/tmp/unused.db");
  EXPECT_EQ(s.status().code(), dtx::Code::kInvalidArgument);
}

}  // namespace
}  // namespace order_saga
