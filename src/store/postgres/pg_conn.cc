#include "store/postgres/pg_conn.h"

#include <poll.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>

#include "store/store.h"

namespace dtx::store::pg {
namespace {

// Milliseconds left until `deadline`, for poll(); 0 if it has passed.
int RemainingMs(Deadline deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
  if (left.count() <= 0) return 0;
  return static_cast<int>(std::min<int64_t>(left.count(), 1'000'000));
}

// Waits until the socket is ready for `events` or the deadline passes. Returns the revents (0 on
// timeout), or -1 on a poll error.
int WaitSocket(int fd, short events, Deadline deadline) {
  for (;;) {
    int ms = RemainingMs(deadline);
    if (ms == 0) return 0;
    pollfd p{.fd = fd, .events = events, .revents = 0};
    int rc = ::poll(&p, 1, ms);
    if (rc > 0) return p.revents;
    if (rc == 0) continue;  // re-check the deadline
    if (errno != EINTR) return -1;
  }
}

std::string TrimNewline(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

// Server notices and warnings (and the goodbye of a terminated session) go to the log, not to
// stderr.
void OnNotice(void* /*arg*/, const PGresult* r) {
  const char* severity = PQresultErrorField(r, PG_DIAG_SEVERITY_NONLOCALIZED);
  std::string msg = TrimNewline(PQresultErrorMessage(r));
  std::string_view sev = severity == nullptr ? "" : severity;
  if (sev == "NOTICE" || sev == "INFO" || sev == "LOG" || sev == "DEBUG") {
    spdlog::debug("postgres: {}", msg);
  } else {
    spdlog::warn("postgres: {}", msg);
  }
}

}  // namespace

// ---------------------------------------------------------------------------------------------------
// Params and ArrayBuilder.

Params& Params::Text(std::string v) {
  if (v.find('\0') != std::string::npos) nul_free_ = false;
  values_.push_back(std::move(v));
  null_.push_back(false);
  return *this;
}

Params& Params::Int(int64_t v) { return Text(std::to_string(v)); }

Params& Params::Null() {
  values_.emplace_back();
  null_.push_back(true);
  return *this;
}

const char* const* Params::pointers() const {
  pointers_.resize(values_.size());
  for (size_t i = 0; i < values_.size(); ++i) {
    pointers_[i] = null_[i] ? nullptr : values_[i].c_str();
  }
  return pointers_.data();
}

void ArrayBuilder::Separator() {
  if (!empty_) s_ += ',';
  empty_ = false;
}

ArrayBuilder& ArrayBuilder::Text(std::string_view v) {
  Separator();
  s_ += '"';
  for (char c : v) {
    if (c == '"' || c == '\\') s_ += '\\';
    s_ += c;
  }
  s_ += '"';
  return *this;
}

ArrayBuilder& ArrayBuilder::Bytea(std::string_view bytes) {
  static constexpr char kHex[] = "0123456789abcdef";
  Separator();
  s_ += "\"\\\\x";  // "\\x: the array parser turns \\ into \, and bytea reads \x as hex
  for (unsigned char c : bytes) {
    s_ += kHex[c >> 4];
    s_ += kHex[c & 0xf];
  }
  s_ += '"';
  return *this;
}

ArrayBuilder& ArrayBuilder::Int(int64_t v) {
  Separator();
  s_ += std::to_string(v);
  return *this;
}

ArrayBuilder& ArrayBuilder::Null() {
  Separator();
  s_ += "NULL";
  return *this;
}

std::string ArrayBuilder::Finish() && {
  s_ += '}';
  return std::move(s_);
}

// ---------------------------------------------------------------------------------------------------
// PgConn.

Result<std::unique_ptr<PgConn>> PgConn::Connect(const ConnectOptions& o, Deadline deadline) {
  // Values after "dbname" override the same keys inside the URI. TCP keepalives make a dead peer
  // visible even on an idle connection; the deadline bounds the attempt itself.
  const char* keys[] = {"dbname",          "application_name",    "client_encoding",  "keepalives",
                        "keepalives_idle", "keepalives_interval", "keepalives_count", nullptr};
  const char* values[] = {
      o.conninfo.c_str(), o.application_name.c_str(), "UTF8", "1", "30", "10", "3", nullptr};
  PGconn* raw = PQconnectStartParams(keys, values, /*expand_dbname=*/1);
  if (raw == nullptr) return Status::Unavailable("postgres: out of memory creating a connection");
  std::unique_ptr<PgConn> conn(new PgConn(raw));
  PQsetNoticeReceiver(raw, OnNotice, nullptr);
  if (PQstatus(raw) == CONNECTION_BAD) {
    return Status::Unavailable("postgres: cannot connect: " + TrimNewline(PQerrorMessage(raw)));
  }
  PostgresPollingStatusType st = PGRES_POLLING_WRITING;
  while (st != PGRES_POLLING_OK) {
    if (st == PGRES_POLLING_FAILED) {
      return Status::Unavailable("postgres: cannot connect: " + TrimNewline(PQerrorMessage(raw)));
    }
    // The socket may change between attempts (several hosts, SSL fallback): ask every time.
    int ev = WaitSocket(PQsocket(raw), st == PGRES_POLLING_READING ? POLLIN : POLLOUT, deadline);
    if (ev == 0) return Status::Unavailable("postgres: cannot connect: timed out");
    if (ev < 0) {
      return Status::Unavailable(std::string("postgres: cannot connect: poll: ") +
                                 std::strerror(errno));
    }
    st = PQconnectPoll(raw);
  }
  if (PQsetnonblocking(raw, 1) != 0) {
    return Status::Unavailable("postgres: cannot switch to non-blocking mode: " +
                               TrimNewline(PQerrorMessage(raw)));
  }
  if (!o.session_sql.empty()) {
    std::vector<Command> cmds;
    for (const auto& sql : o.session_sql) cmds.push_back(Command::Sql(sql));
    auto r = conn->Run(cmds, deadline);
    if (!r.ok()) return r.status();
    for (size_t i = 0; i < cmds.size(); ++i) {
      if (!ResultOk((*r)[i].get())) {
        Status s = ErrorStatus((*r)[i].get(), cmds[i].sql);
        return Status::Unavailable("postgres: session setup failed: " + s.message());
      }
    }
  }
  return conn;
}

PgConn::~PgConn() { PQfinish(conn_); }

Status PgConn::Break(std::string_view what) {
  broken_ = true;
  std::string detail = TrimNewline(PQerrorMessage(conn_));
  std::string msg = "postgres connection lost (" + std::string(what) + ")";
  if (!detail.empty()) msg += ": " + detail;
  return Status::Unavailable(std::move(msg));
}

bool PgConn::CheckIdle() {
  if (broken_) return false;
  if (PQstatus(conn_) != CONNECTION_OK) {
    broken_ = true;
    return false;
  }
  // Something may have arrived while idle: a notice, or the server's goodbye (an error message)
  // followed by EOF. One read may return the message only, so read until nothing is left (bounded:
  // an idle connection receives little).
  for (int reads = 0; reads < 16; ++reads) {
    pollfd p{.fd = PQsocket(conn_), .events = POLLIN, .revents = 0};
    if (::poll(&p, 1, 0) <= 0) break;
    if (PQconsumeInput(conn_) == 0) {
      broken_ = true;
      return false;
    }
    while (PQisBusy(conn_) == 0) {
      PGresult* r = PQgetResult(conn_);
      if (r == nullptr) break;
      PQclear(r);
    }
  }
  if (PQstatus(conn_) != CONNECTION_OK) broken_ = true;
  return !broken_;
}

Result<std::vector<PgResult>> PgConn::Run(std::span<const Command> commands, Deadline deadline) {
  if (broken_) return Status::Unavailable("postgres connection lost earlier");
  if (PQenterPipelineMode(conn_) != 1) return Break("enter pipeline mode");
  for (const auto& c : commands) {
    int n = c.params == nullptr ? 0 : c.params->size();
    const char* const* v = c.params == nullptr ? nullptr : c.params->pointers();
    int ok = 0;
    switch (c.kind) {
      case Command::Kind::kExecPrepared:
        ok = PQsendQueryPrepared(conn_, c.name.c_str(), n, v, nullptr, nullptr, /*binary=*/1);
        break;
      case Command::Kind::kPrepare:
        ok = PQsendPrepare(conn_, c.name.c_str(), c.sql.c_str(), 0, nullptr);
        break;
      case Command::Kind::kExecSql:
        ok = PQsendQueryParams(conn_, c.sql.c_str(), n, nullptr, v, nullptr, nullptr, 1);
        break;
    }
    if (ok != 1) return Break("send");
  }
  if (PQpipelineSync(conn_) != 1) return Break("sync");

  std::vector<PgResult> out(commands.size());
  size_t i = 0;  // the command whose results come next
  bool synced = false;
  while (!synced) {
    int flush = PQflush(conn_);  // 0: all sent, 1: more to send, -1: error
    if (flush < 0) return Break("flush");
    while (!synced && PQisBusy(conn_) == 0) {
      PGresult* raw = PQgetResult(conn_);
      if (raw == nullptr) {
        // The end of one command's results.
        if (i < out.size() && out[i] != nullptr) {
          ++i;
          continue;
        }
        break;  // nothing complete yet
      }
      PgResult r(raw);
      if (PQresultStatus(raw) == PGRES_PIPELINE_SYNC) {
        synced = true;
        break;
      }
      if (i >= out.size()) return Break("unexpected result after the last command");
      // One result per command is expected; if more arrive, an error wins.
      if (out[i] == nullptr || !ResultOk(raw)) out[i] = std::move(r);
    }
    if (synced) break;
    if (PQstatus(conn_) == CONNECTION_BAD) return Break("read");
    short events = POLLIN;
    if (flush == 1) events |= POLLOUT;
    int ev = WaitSocket(PQsocket(conn_), events, deadline);
    if (ev == 0) return Break("no answer before the deadline");
    if (ev < 0) return Break("poll");
    if ((ev & (POLLIN | POLLERR | POLLHUP)) != 0 && PQconsumeInput(conn_) == 0) {
      return Break("read");
    }
  }
  if (i != out.size()) return Break("fewer results than commands");
  // Exit needs an idle connection; a trailing NULL result may still be queued.
  for (int tries = 0; PQexitPipelineMode(conn_) != 1; ++tries) {
    if (tries > 0 || PQisBusy(conn_) != 0) return Break("exit pipeline mode");
    PGresult* r = PQgetResult(conn_);
    if (r != nullptr) {
      PQclear(r);
      return Break("unexpected result after the pipeline");
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------
// Results.

bool ResultOk(const PGresult* r) {
  if (r == nullptr) return false;
  ExecStatusType st = PQresultStatus(r);
  return st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;
}

std::string_view SqlState(const PGresult* r) {
  const char* s = r == nullptr ? nullptr : PQresultErrorField(r, PG_DIAG_SQLSTATE);
  return s == nullptr ? std::string_view() : std::string_view(s);
}

namespace {

Status Classify(std::string msg, std::string_view state) {
  auto is = [&](std::string_view code) { return state == code; };
  auto cls = [&](std::string_view prefix) { return state.starts_with(prefix); };
  if (is("23505")) return Status::AlreadyExists(std::move(msg));
  if (cls("22")) return Status::InvalidArgument(std::move(msg));
  if (is("40001") || is("40P01") || is("55P03") || is("57014") || cls("08") || cls("57P") ||
      is("25006") || is("53300") || is("53200")) {
    return Status::Unavailable(std::move(msg));
  }
  if (is("53100") || cls("58") || cls("XX")) return Status::IoError(std::move(msg));
  return Status::Internal(std::move(msg));
}

}  // namespace

Status ErrorStatus(const PGresult* r, std::string_view what) {
  std::string msg = "postgres: " + std::string(what) + ": ";
  auto tagged = [](Status s, std::string_view state) {
    return std::move(s).WithInfo(
        ErrorInfo{std::string(store::kDatabaseErrorReason), {{"sqlstate", std::string(state)}}});
  };
  if (r == nullptr) return tagged(Status::Internal(msg + "no result"), {});
  if (PQresultStatus(r) == PGRES_PIPELINE_ABORTED) {
    return tagged(Status::Internal(msg + "not run: an earlier statement of the pipeline failed"),
                  {});
  }
  const char* primary = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
  msg += primary != nullptr ? primary : TrimNewline(PQresultErrorMessage(r));
  std::string_view state = SqlState(r);
  if (!state.empty()) {
    msg += " (SQLSTATE ";
    msg += state;
    msg += ")";
  }
  return tagged(Classify(std::move(msg), state), state);
}

int64_t GetInt(const PGresult* r, int row, int col) {
  if (PQgetisnull(r, row, col) != 0) return 0;
  const auto* p = reinterpret_cast<const unsigned char*>(PQgetvalue(r, row, col));
  int len = PQgetlength(r, row, col);
  uint64_t v = 0;
  for (int k = 0; k < len; ++k) v = (v << 8) | p[k];
  // Sign-extend the big-endian two's complement value of `len` bytes.
  if (len > 0 && len < 8 && (p[0] & 0x80) != 0) v |= ~uint64_t{0} << (8 * len);
  return static_cast<int64_t>(v);
}

bool GetBool(const PGresult* r, int row, int col) {
  return PQgetisnull(r, row, col) == 0 && PQgetlength(r, row, col) == 1 &&
         PQgetvalue(r, row, col)[0] != 0;
}

std::string GetBytes(const PGresult* r, int row, int col) {
  if (PQgetisnull(r, row, col) != 0) return {};
  return std::string(PQgetvalue(r, row, col), static_cast<size_t>(PQgetlength(r, row, col)));
}

Result<std::string> DescribeConninfo(const std::string& conninfo) {
  char* err = nullptr;
  PQconninfoOption* opts = PQconninfoParse(conninfo.c_str(), &err);
  if (opts == nullptr) {
    std::string msg = err != nullptr ? TrimNewline(err) : "out of memory";
    PQfreemem(err);
    return Status::InvalidArgument("postgres: bad connection URL: " + msg);
  }
  std::string user, host, port, db;
  for (PQconninfoOption* o = opts; o->keyword != nullptr; ++o) {
    if (o->val == nullptr) continue;
    std::string_view k = o->keyword;
    if (k == "user") user = o->val;
    if (k == "host" || (k == "hostaddr" && host.empty())) host = o->val;
    if (k == "port") port = o->val;
    if (k == "dbname") db = o->val;
  }
  PQconninfoFree(opts);
  std::string out;
  if (!user.empty()) out += user + "@";
  out += host.empty() ? "localhost" : host;
  if (!port.empty()) out += ":" + port;
  out += "/" + db;
  return out;
}

}  // namespace dtx::store::pg
