#include "http/tls.h"

#include <openssl/err.h>
#include <openssl/ssl.h>

#include <boost/asio/ssl/context.hpp>
#include <fstream>

namespace dtx::http {

namespace ssl = boost::asio::ssl;

namespace {

// The first queued OpenSSL error, readable ("PEM routines::no start line"), or `fallback`.
std::string OpenSslReason(const boost::system::error_code& ec) {
  std::string reason = ec ? ec.message() : std::string();
  char buf[256];
  if (unsigned long e = ERR_get_error(); e != 0) {
    ERR_error_string_n(e, buf, sizeof buf);
    reason = buf;
  }
  ERR_clear_error();
  return reason.empty() ? std::string("unknown error") : reason;
}

Status CheckReadable(const std::string& what, const std::string& path) {
  if (path.empty()) return Status::InvalidArgument(what + ": no file given");
  std::ifstream in(path);
  if (!in) return Status::InvalidArgument(what + " '" + path + "': cannot be read");
  return Status::Ok();
}

constexpr auto kOptions = ssl::context::default_workarounds | ssl::context::no_sslv2 |
                          ssl::context::no_sslv3 | ssl::context::no_tlsv1 |
                          ssl::context::no_tlsv1_1 | ssl::context::single_dh_use;

}  // namespace

Result<std::shared_ptr<TlsContext>> MakeServerTlsContext(const std::string& cert_file,
                                                         const std::string& key_file) {
  if (Status s = CheckReadable("--tls-cert", cert_file); !s.ok()) return s;
  if (Status s = CheckReadable("--tls-key", key_file); !s.ok()) return s;
  auto ctx = std::make_shared<TlsContext>(ssl::context::tls_server);
  boost::system::error_code ec;
  ctx->set_options(kOptions, ec);
  if (ctx->use_certificate_chain_file(cert_file, ec); ec) {
    return Status::InvalidArgument("--tls-cert '" + cert_file +
                                   "': not a usable PEM certificate: " + OpenSslReason(ec));
  }
  if (ctx->use_private_key_file(key_file, ssl::context::pem, ec); ec) {
    return Status::InvalidArgument("--tls-key '" + key_file +
                                   "': not a usable PEM private key: " + OpenSslReason(ec));
  }
  if (SSL_CTX_check_private_key(ctx->native_handle()) != 1) {
    return Status::InvalidArgument("--tls-key '" + key_file + "' does not match --tls-cert '" +
                                   cert_file + "': " + OpenSslReason({}));
  }
  return ctx;
}

Result<std::shared_ptr<TlsContext>> MakeClientTlsContext(const std::string& ca_file) {
  auto ctx = std::make_shared<TlsContext>(ssl::context::tls_client);
  boost::system::error_code ec;
  ctx->set_options(kOptions, ec);
  ctx->set_verify_mode(ssl::verify_peer, ec);
  // The system store may be absent (a minimal container): then only ca_file is trusted.
  ctx->set_default_verify_paths(ec);
  ERR_clear_error();
  if (!ca_file.empty()) {
    if (Status s = CheckReadable("--ca-file", ca_file); !s.ok()) return s;
    if (ctx->load_verify_file(ca_file, ec); ec) {
      return Status::InvalidArgument("--ca-file '" + ca_file +
                                     "': no PEM certificate could be loaded: " + OpenSslReason(ec));
    }
  }
  return ctx;
}

}  // namespace dtx::http
