// The inbox as an installed user meets it (dtx::inbox / pkg-config dtx-inbox), end to end through
// the installed `dtx relay` and a real redis-server (run.sh starts both):
//   consumer_inbox write DIR        commits 4 events to DIR/app.db's outbox (and rolls one back)
//   consumer_inbox consume DIR URL  consumes them from Redis Streams at URL into DIR/svc.db:
//                                   each applied once, per key in order, the rolled-back one never
// Exit 0 when every check passed.
#include <dtx/inbox.h>
#include <dtx/outbox.h>
#include <sqlite3.h>

#include <chrono>
#include <cstdio>
#include <map>
#include <string>
#include <vector>

namespace {

int failures = 0;

void Check(bool ok, const std::string& what) {
  if (!ok) {
    std::fprintf(stderr, "consumer_inbox: FAILED: %s\n", what.c_str());
    ++failures;
  }
}

bool Exec(sqlite3* db, const std::string& sql) {
  char* err = nullptr;
  const bool ok = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err) == SQLITE_OK;
  if (!ok) std::fprintf(stderr, "consumer_inbox: %s: %s\n", sql.c_str(), err ? err : "?");
  sqlite3_free(err);
  return ok;
}

// One transaction of the order service: the events of `ids` (key `key`), committed or not.
void WriteEvents(sqlite3* db, const std::string& key, const std::vector<std::string>& ids,
                 bool commit) {
  const dtx::Outbox outbox;
  Check(Exec(db, "BEGIN IMMEDIATE"), "begin");
  for (const std::string& id : ids) {
    dtx::OutboxMessage m;
    m.topic = "consumer-orders";
    m.key = key;
    m.message_id = id;
    m.payload = "{\"event\":\"" + id + "\"}";
    m.headers = {{"correlation_id", key}};
    dtx::Result<std::string> written = outbox.Write(db, m);
    Check(written.ok(), "outbox write " + id + ": " + written.status().ToString());
  }
  Check(Exec(db, commit ? "COMMIT" : "ROLLBACK"), "end");
}

int Write(const std::string& dir) {
  sqlite3* db = nullptr;
  Check(sqlite3_open((dir + "/app.db").c_str(), &db) == SQLITE_OK, "open app.db");
  Check(dtx::Outbox().EnsureTable(db).ok(), "outbox table");
  WriteEvents(db, "o1", {"e1", "e2"}, true);
  WriteEvents(db, "o2", {"e3"}, true);
  WriteEvents(db, "o2", {"rolled-back"}, false);
  WriteEvents(db, "o1", {"e4"}, true);
  sqlite3_close(db);
  return failures == 0 ? 0 : 1;
}

int Consume(const std::string& dir, const std::string& url) {
  sqlite3* db = nullptr;
  Check(sqlite3_open((dir + "/svc.db").c_str(), &db) == SQLITE_OK, "open svc.db");
  Check(Exec(db,
             "create table effects (seq integer primary key, msg_key text, message_id text, "
             "correlation text)"),
        "effects table");
  dtx::InboxOptions options;
  options.broker = url;
  options.consumer = "billing";
  options.topics = {"consumer-orders"};
  auto inbox = dtx::Inbox::Open(db, options, [&](const dtx::InboxMessage& m) -> dtx::Status {
    const std::string sql = "insert into effects (msg_key, message_id, correlation) values ('" +
                            m.key + "', '" + m.message_id + "', '" + m.Header("correlation_id") +
                            "')";  // test values only: no quotes in them
    if (!Exec(db, sql)) return dtx::Status::Unavailable(sqlite3_errmsg(db));
    return dtx::Status::Ok();
  });
  Check(inbox.ok(), "Inbox::Open: " + inbox.status().ToString());
  if (!inbox.ok()) return 1;
  Check(inbox.value()->EnsureTables().ok(), "EnsureTables");
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (inbox.value()->counters().applied < 4 && std::chrono::steady_clock::now() < deadline) {
    dtx::Result<size_t> n = inbox.value()->Poll(std::chrono::milliseconds(200));
    if (!n.ok()) std::fprintf(stderr, "consumer_inbox: poll: %s\n", n.status().ToString().c_str());
  }
  // A little longer: anything else that came (the rolled-back event, a duplicate) would show.
  for (int i = 0; i < 3; ++i) (void)inbox.value()->Poll(std::chrono::milliseconds(200));
  Check(inbox.value()->counters().applied == 4,
        "applied " + std::to_string(inbox.value()->counters().applied) + ", want 4");
  std::map<std::string, std::string> order;  // key -> its message ids in applied order
  sqlite3_stmt* st = nullptr;
  sqlite3_prepare_v2(db, "select msg_key, message_id, correlation from effects order by seq", -1,
                     &st, nullptr);
  while (sqlite3_step(st) == SQLITE_ROW) {
    const std::string key = reinterpret_cast<const char*>(sqlite3_column_text(st, 0));
    order[key] += reinterpret_cast<const char*>(sqlite3_column_text(st, 1));
    order[key] += ' ';
    Check(key == reinterpret_cast<const char*>(sqlite3_column_text(st, 2)), "correlation header");
  }
  sqlite3_finalize(st);
  Check(order["o1"] == "e1 e2 e4 ", "key o1 applied as '" + order["o1"] + "'");
  Check(order["o2"] == "e3 ", "key o2 applied as '" + order["o2"] + "'");
  inbox.value().reset();
  sqlite3_close(db);
  std::printf("%s\n",
              failures == 0 ? "consumer_inbox: all checks passed" : "consumer_inbox: FAILED");
  return failures == 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string mode = argc > 1 ? argv[1] : "";
  if (mode == "write" && argc == 3) return Write(argv[2]);
  if (mode == "consume" && argc == 4) return Consume(argv[2], argv[3]);
  std::fprintf(stderr, "usage: %s write DIR | consume DIR REDIS_URL\n", argv[0]);
  return 2;
}
