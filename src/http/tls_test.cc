// TLS of the server and the client: a private CA made with the openssl command line, the server
// with its certificate, clients that trust the CA (or not), connection reuse over https, host name
// verification, and the startup errors of bad certificate, key and CA files.
#include "http/tls.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/use_future.hpp>
#include <filesystem>
#include <fstream>
#include <future>
#include <memory>
#include <optional>
#include <string>

#include "http/client.h"
#include "http/http_test_util.h"
#include "http/test_certs.h"
#include "runtime/io_pool.h"

namespace dtx::http {
namespace {

using namespace std::chrono_literals;
using testing::TestHandler;

boost::asio::awaitable<std::optional<Result<ClientResponse>>> SendWrapped(Client* client,
                                                                          ClientRequest request) {
  co_return co_await client->Send(std::move(request));
}

class TlsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new std::string(std::filesystem::temp_directory_path().string() + "/dtx-tls-test-" +
                           std::to_string(::getpid()));
    std::filesystem::create_directories(*dir_);
    certs_ = new testing::TestCerts(testing::MakeTestCerts(*dir_));
  }
  static void TearDownTestSuite() {
    std::filesystem::remove_all(*dir_);
    delete certs_;
    delete dir_;
  }

  void SetUp() override {
    ASSERT_TRUE(certs_->ok) << "openssl could not make the test certificates";
    server_pool_ = std::make_unique<runtime::IoPool>(1);
    server_pool_->Start();
    client_pool_ = std::make_unique<runtime::IoPool>(1);
    client_pool_->Start();
  }
  void TearDown() override {
    server_.reset();
    server_pool_.reset();
    client_pool_->Stop();
    client_pool_->Join();
    client_.reset();
    client_pool_.reset();
  }

  void StartServer(const std::string& cert, const std::string& key) {
    auto ctx = MakeServerTlsContext(cert, key);
    ASSERT_TRUE(ctx.ok()) << ctx.status().ToString();
    ServerOptions options;
    options.tls = *ctx;
    server_ = std::make_unique<Server>(*server_pool_, options, handler_);
    ASSERT_TRUE(server_->Start().ok());
    base_ = "https://127.0.0.1:" + std::to_string(server_->port());
  }

  void MakeClient(const std::string& ca_file) {
    ClientOptions options;
    if (!ca_file.empty()) {
      auto ctx = MakeClientTlsContext(ca_file);
      ASSERT_TRUE(ctx.ok()) << ctx.status().ToString();
      options.tls = *ctx;
    }
    client_ = std::make_unique<Client>(client_pool_->Get(0).get_executor(), options);
  }

  Result<ClientResponse> Send(std::string url, std::string body = "") {
    ClientRequest r;
    r.method = body.empty() ? "GET" : "POST";
    r.url = std::move(url);
    r.body = std::move(body);
    auto f = boost::asio::co_spawn(client_pool_->Get(0), SendWrapped(client_.get(), std::move(r)),
                                   boost::asio::use_future);
    if (f.wait_for(10s) != std::future_status::ready) return Status::Internal("gave up waiting");
    return *f.get();
  }

  static std::string* dir_;
  static testing::TestCerts* certs_;
  TestHandler handler_;
  std::unique_ptr<runtime::IoPool> server_pool_;
  std::unique_ptr<runtime::IoPool> client_pool_;
  std::unique_ptr<Server> server_;
  std::unique_ptr<Client> client_;
  std::string base_;
};

std::string* TlsTest::dir_ = nullptr;
testing::TestCerts* TlsTest::certs_ = nullptr;

TEST_F(TlsTest, TrustedCaAnswersAndReusesTheConnection) {
  StartServer(certs_->cert, certs_->key);
  MakeClient(certs_->ca);
  for (int i = 0; i < 5; ++i) {
    auto r = Send(base_ + "/echo?i=" + std::to_string(i), "payload-" + std::to_string(i));
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_EQ(r->status, 200);
    EXPECT_EQ(r->body, "payload-" + std::to_string(i));
  }
  // The five requests went over one kept-alive TLS connection.
  EXPECT_EQ(server_->accepted_connections(), 1u);
}

TEST_F(TlsTest, LargeBodiesCrossTls) {
  StartServer(certs_->cert, certs_->key);
  MakeClient(certs_->ca);
  const std::string big(300 * 1024, 'y');
  auto r = Send(base_ + "/echo", big);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->body, big);
  auto b = Send(base_ + "/big?n=200000");
  ASSERT_TRUE(b.ok()) << b.status().ToString();
  EXPECT_EQ(b->body.size(), 200000u);
}

TEST_F(TlsTest, UntrustedServerIsRefusedWithTheReason) {
  StartServer(certs_->cert, certs_->key);
  MakeClient("");  // the system's trust store does not know the test CA
  auto r = Send(base_ + "/echo");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kUnavailable);
  EXPECT_NE(r.status().message().find("certificate verify failed"), std::string::npos)
      << r.status().message();
  EXPECT_EQ(handler_.calls.load(), 0);

  MakeClient(certs_->other_ca);
  auto o = Send(base_ + "/echo");
  ASSERT_FALSE(o.ok());
  EXPECT_NE(o.status().message().find("certificate verify failed"), std::string::npos)
      << o.status().message();
  EXPECT_EQ(handler_.calls.load(), 0);
}

TEST_F(TlsTest, HostNameMustMatchTheCertificate) {
  StartServer(certs_->wrong_cert, certs_->wrong_key);  // a certificate for other.test
  MakeClient(certs_->ca);
  auto r = Send(base_ + "/echo");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("certificate verify failed"), std::string::npos)
      << r.status().message();
  EXPECT_EQ(handler_.calls.load(), 0);
}

TEST_F(TlsTest, PlainHttpToTlsServerFailsAndTheServerKeepsServing) {
  StartServer(certs_->cert, certs_->key);
  MakeClient(certs_->ca);
  auto plain = Send("http://127.0.0.1:" + std::to_string(server_->port()) + "/echo");
  EXPECT_FALSE(plain.ok() && plain->status == 200);
  auto r = Send(base_ + "/echo", "after");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->body, "after");
}

TEST_F(TlsTest, HttpsUrlsParse) {
  auto a = ParseHttpUrl("https://example.com/x");
  ASSERT_TRUE(a.ok());
  EXPECT_TRUE(a->tls);
  EXPECT_EQ(a->port, 443);
  auto b = ParseHttpUrl("HTTPS://[::1]:8443");
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->port, 8443);
  EXPECT_EQ(b->host, "::1");
  EXPECT_FALSE(ParseHttpUrl("ftp://x").ok());
}

TEST_F(TlsTest, BadFilesAreRefusedSayingWhy) {
  const std::string garbage = *dir_ + "/garbage.pem";
  std::ofstream(garbage) << "not a certificate\n";
  auto missing = MakeServerTlsContext(*dir_ + "/nope.pem", certs_->key);
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("nope.pem': cannot be read"), std::string::npos)
      << missing.status().message();
  auto bad_cert = MakeServerTlsContext(garbage, certs_->key);
  ASSERT_FALSE(bad_cert.ok());
  EXPECT_NE(bad_cert.status().message().find("not a usable PEM certificate"), std::string::npos)
      << bad_cert.status().message();
  auto bad_key = MakeServerTlsContext(certs_->cert, garbage);
  ASSERT_FALSE(bad_key.ok());
  EXPECT_NE(bad_key.status().message().find("not a usable PEM private key"), std::string::npos)
      << bad_key.status().message();
  auto mismatch = MakeServerTlsContext(certs_->cert, certs_->wrong_key);
  ASSERT_FALSE(mismatch.ok());
  EXPECT_NE(mismatch.status().message().find("mismatch"), std::string::npos)
      << mismatch.status().message();
  auto bad_ca = MakeClientTlsContext(garbage);
  ASSERT_FALSE(bad_ca.ok());
  EXPECT_NE(bad_ca.status().message().find("--ca-file"), std::string::npos);
  EXPECT_TRUE(MakeClientTlsContext(certs_->ca).ok());
}

}  // namespace
}  // namespace dtx::http
