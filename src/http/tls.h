// TLS contexts (OpenSSL through Boost.Asio SSL) for the HTTP server and client. A context is built
// once at startup and shared by every connection and thread (OpenSSL's SSL_CTX is safe to share
// once configured); building one checks the files, so a bad certificate, key or CA file stops the
// server before it listens, with the file and the cause in the message.
#pragma once

#include <memory>
#include <string>

#include "util/status.h"

namespace boost::asio::ssl {
class context;
}  // namespace boost::asio::ssl

namespace dtx::http {

using TlsContext = boost::asio::ssl::context;

// A server context: the certificate chain and the private key, both PEM. TLS 1.2 and later only.
// kInvalidArgument names the file that cannot be read or used and why (missing, not PEM, the key
// does not match the certificate).
Result<std::shared_ptr<TlsContext>> MakeServerTlsContext(const std::string& cert_file,
                                                         const std::string& key_file);

// A client context that verifies the peer: against the system's trust store plus, when `ca_file`
// is non-empty, the PEM certificates in it. TLS 1.2 and later. The host name is verified per
// connection by the client (http::Client).
Result<std::shared_ptr<TlsContext>> MakeClientTlsContext(const std::string& ca_file);

}  // namespace dtx::http
