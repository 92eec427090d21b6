// Message helpers shared by the server's files (message.cc defines them); not part of the API.
#pragma once

#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/system/error_code.hpp>
#include <string>
#include <string_view>

#include "http/server.h"

namespace dtx::http::detail {

// {"message":...,"code":...} with the message JSON-escaped.
std::string ErrorJson(std::string_view message, std::string_view code);
// A handler may answer any final status; anything else is a bug and becomes a 500.
bool ValidStatus(int status);
// Whether a response with this status carries no body (RFC 9110 6.4.1).
bool StatusHasNoBody(int status);
// Writes the status line and headers of `response` into `out` (reused per connection). Returns the
// effective keep-alive: a handler may close the connection with its own "Connection: close".
// `response.status` must be valid (see ValidStatus).
bool SerializeHead(std::string& out, const Response& response, bool keep_alive, bool http10);
bool ExpectsContinue(const boost::beast::http::request<boost::beast::http::string_body>& msg);
bool IsBeastHttpError(const boost::system::error_code& ec);
Request MakeRequest(boost::beast::http::request<boost::beast::http::string_body>&& msg);
Response InternalError(std::string_view what);

}  // namespace dtx::http::detail
