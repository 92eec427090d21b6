#include "dtx/participant.h"

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/associated_cancellation_slot.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/cancellation_type.hpp>
#include <boost/asio/execution/outstanding_work.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/prefer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json.hpp>
#include <condition_variable>
#include <deque>
#include <exception>
#include <map>
#include <mutex>
#include <thread>
#include <utility>

#include "http/server.h"
#include "runtime/io_pool.h"

namespace dtx {
namespace {

namespace asio = boost::asio;
namespace json = boost::json;

bool IEquals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    char x = a[i], y = b[i];
    if (x >= 'A' && x <= 'Z') x = static_cast<char>(x - 'A' + 'a');
    if (y >= 'A' && y <= 'Z') y = static_cast<char>(y - 'A' + 'a');
    if (x != y) return false;
  }
  return true;
}

std::optional<std::string> FindQueryParam(std::string_view query, std::string_view name) {
  while (!query.empty()) {
    size_t amp = query.find('&');
    std::string_view pair = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
    size_t eq = pair.find('=');
    std::string key = http::UrlDecode(pair.substr(0, eq));
    if (key == name) {
      return eq == std::string_view::npos ? std::string() : http::UrlDecode(pair.substr(eq + 1));
    }
  }
  return std::nullopt;
}

// A fixed set of threads with a bounded FIFO of jobs. A job that cannot be queued is refused at
// once.
class WorkerPool {
 public:
  struct Job {
    std::function<void()> run;     // on a worker thread
    std::function<void()> reject;  // instead of run, when the pool stops with the job still queued
  };

  WorkerPool(size_t threads, size_t max_queued) : max_queued_(max_queued) {
    if (threads == 0) threads = 1;
    for (size_t i = 0; i < threads; ++i) threads_.emplace_back([this] { Loop(); });
  }
  ~WorkerPool() { Stop(); }

  // False when the queue holds max_queued jobs already, or the pool is stopping.
  bool TrySubmit(Job job) {
    {
      std::lock_guard lock(mu_);
      if (stopping_ || queue_.size() >= max_queued_) return false;
      queue_.push_back(std::move(job));
    }
    cv_.notify_one();
    return true;
  }

  // Rejects queued jobs, waits for running ones, joins the threads. Idempotent.
  void Stop() {
    std::deque<Job> rejected;
    {
      std::lock_guard lock(mu_);
      stopping_ = true;
      rejected.swap(queue_);
    }
    cv_.notify_all();
    for (Job& job : rejected) job.reject();
    for (std::thread& t : threads_) {
      if (t.joinable()) t.join();
    }
  }

 private:
  void Loop() {
    for (;;) {
      Job job;
      {
        std::unique_lock lock(mu_);
        cv_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
        if (queue_.empty()) return;  // stopping
        job = std::move(queue_.front());
        queue_.pop_front();
      }
      job.run();
    }
  }

  const size_t max_queued_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Job> queue_;
  bool stopping_ = false;
  std::vector<std::thread> threads_;
};

BranchResult Overloaded() {
  return BranchResult::Custom(
      503, json::serialize(json::object{{"message", "participant overloaded: worker queue full"},
                                        {"code", "UNAVAILABLE"}}));
}

BranchResult RunHandler(const BranchHandler& handler, const BranchRequest& request) {
  try {
    return handler(request);
  } catch (const std::exception& e) {
    return BranchResult::Error(std::string("handler threw: ") + e.what());
  } catch (...) {
    return BranchResult::Error("handler threw an unknown exception");
  }
}

BranchResult Cancelled() {
  return BranchResult::Custom(
      503, json::serialize(
               json::object{{"message", "participant server stopping"}, {"code", "UNAVAILABLE"}}));
}

// Completion state of one request handed to the worker pool: the coroutine's completion handler,
// the executor to resume it on (tracked, so its context does not run out of work meanwhile), and
// whether it has been completed. `done` and the cancellation slot are only touched on that
// executor, so the worker's result and a cancellation (http::Server::Stop cancels handlers) cannot
// both complete it.
template <class CompletionHandler>
struct Pending : std::enable_shared_from_this<Pending<CompletionHandler>> {
  Pending(CompletionHandler h, asio::any_io_executor ex)
      : handler(std::move(h)), executor(std::move(ex)) {}

  CompletionHandler handler;
  asio::any_io_executor executor;
  bool done = false;

  // From any thread: resume the coroutine with `result` unless it was already resumed.
  void Complete(BranchResult result) {
    asio::post(executor, [self = this->shared_from_this(), result = std::move(result)]() mutable {
      self->CompleteHere(std::move(result));
    });
  }

  // On `executor`.
  void CompleteHere(BranchResult result) {
    if (done) return;
    done = true;
    auto slot = asio::get_associated_cancellation_slot(handler);
    if (slot.is_connected()) slot.clear();
    std::move(handler)(std::move(result));
  }

  // On `executor` (cancellation is emitted there). The worker keeps running the user's handler; its
  // result is dropped.
  void ListenForCancellation() {
    auto slot = asio::get_associated_cancellation_slot(handler);
    if (!slot.is_connected()) return;
    std::weak_ptr<Pending> weak = this->shared_from_this();
    slot.assign([weak](asio::cancellation_type) {
      if (auto self = weak.lock(); self && !self->done) self->Complete(Cancelled());
    });
  }
};

// Initiation of the "run on a worker" operation (a function object, not a coroutine lambda).
struct RunOnWorker {
  WorkerPool* pool;
  const BranchHandler* handler;  // owned by the routes table, which outlives the pool
  std::shared_ptr<const BranchRequest> request;

  template <class CompletionHandler>
  void operator()(CompletionHandler&& completion) const {
    using P = Pending<std::decay_t<CompletionHandler>>;
    auto ex = asio::get_associated_executor(completion);
    auto pending = std::make_shared<P>(std::forward<CompletionHandler>(completion),
                                       asio::prefer(ex, asio::execution::outstanding_work.tracked));
    pending->ListenForCancellation();
    const BranchHandler* fn = handler;
    auto req = request;
    WorkerPool::Job job{
        [pending, fn, req] { pending->Complete(RunHandler(*fn, *req)); },
        [pending] { pending->Complete(Cancelled()); },
    };
    if (!pool->TrySubmit(std::move(job))) pending->Complete(Overloaded());
  }
};

}  // namespace

std::string_view BranchRequest::Header(std::string_view name) const {
  for (const auto& [k, v] : headers) {
    if (IEquals(k, name)) return v;
  }
  return {};
}

std::optional<std::string> BranchRequest::QueryParam(std::string_view name) const {
  return FindQueryParam(query, name);
}

BranchResult BranchResult::Success() { return {200, R"({"dtm_result":"SUCCESS"})"}; }

BranchResult BranchResult::Failure(std::string_view message) {
  return {409, json::serialize(json::object{{"dtm_result", "FAILURE"}, {"message", message}})};
}

BranchResult BranchResult::Ongoing() { return {425, R"({"dtm_result":"ONGOING"})"}; }

BranchResult BranchResult::Error(std::string_view message) {
  return {500, json::serialize(json::object{{"message", message}})};
}

BranchResult BranchResult::Custom(int status, std::string body, std::string content_type) {
  return {status, std::move(body), std::move(content_type)};
}

struct ParticipantServer::Impl : http::Handler {
  struct Route {
    std::string method;
    BranchHandler handler;
  };

  explicit Impl(ParticipantOptions o) : options(std::move(o)) {}

  asio::awaitable<http::Response> Handle(http::Request request) override {
    const Route* route = nullptr;
    bool path_known = false;
    if (auto it = routes.find(request.path); it != routes.end()) {
      path_known = true;
      for (const Route& r : it->second) {
        if (r.method == request.method) {
          route = &r;  // an exact method wins over "*"
          break;
        }
        if (r.method == "*") route = &r;
      }
    }
    if (route == nullptr) {
      http::Response response;
      response.status = path_known ? 405 : 404;
      response.body = json::serialize(
          json::object{{"message", (path_known ? "method not allowed: " : "no route: ") +
                                       request.method + " " + request.path},
                       {"code", path_known ? "METHOD_NOT_ALLOWED" : "NOT_FOUND"}});
      if (path_known) {  // RFC 9110 §15.5.6: a 405 lists the methods the path answers
        std::string allow;
        for (const Route& r : routes.find(request.path)->second) {
          allow += (allow.empty() ? "" : ", ") + r.method;
        }
        response.headers.emplace_back("Allow", std::move(allow));
      }
      co_return response;
    }
    auto branch = std::make_shared<BranchRequest>();
    branch->gid = request.QueryParam("gid").value_or("");
    branch->trans_type = request.QueryParam("trans_type").value_or("");
    branch->branch_id = request.QueryParam("branch_id").value_or("");
    branch->op = request.QueryParam("op").value_or("");
    branch->method = std::move(request.method);
    branch->path = std::move(request.path);
    branch->query = std::move(request.query);
    branch->headers = std::move(request.headers);
    branch->body = std::move(request.body);

    RunOnWorker initiation{workers.get(), &route->handler, std::move(branch)};
    BranchResult result =
        co_await asio::async_initiate<const asio::use_awaitable_t<>&, void(BranchResult)>(
            std::move(initiation), asio::use_awaitable);
    http::Response response;
    response.status = result.status;
    response.body = std::move(result.body);
    response.content_type = std::move(result.content_type);
    co_return response;
  }

  ParticipantOptions options;
  std::map<std::string, std::vector<Route>> routes;  // by path; read-only once started
  // Destruction order matters: server first (no new requests), then workers, then the I/O threads.
  std::unique_ptr<runtime::IoPool> pool;
  std::unique_ptr<WorkerPool> workers;
  std::unique_ptr<http::Server> server;
  bool started = false;
  bool stopped = false;
};

ParticipantServer::ParticipantServer(ParticipantOptions options)
    : impl_(std::make_unique<Impl>(std::move(options))) {}

ParticipantServer::~ParticipantServer() { Stop(); }

void ParticipantServer::Handle(std::string method, std::string path, BranchHandler handler) {
  DTX_INVARIANT(!impl_->started, "ParticipantServer::Handle after Start");
  auto& routes = impl_->routes[std::move(path)];
  for (Impl::Route& r : routes) {
    if (r.method == method) {
      r.handler = std::move(handler);
      return;
    }
  }
  routes.push_back({std::move(method), std::move(handler)});
}

Status ParticipantServer::Start() {
  if (impl_->started) return Status::Conflict("participant server already started");
  const ParticipantOptions& o = impl_->options;
  http::ServerOptions so;
  so.host = o.host;
  so.port = o.port;
  so.max_body_bytes = o.max_body_bytes;
  so.read_timeout = o.read_timeout;
  impl_->pool = std::make_unique<runtime::IoPool>(o.io_threads == 0 ? 1 : o.io_threads);
  impl_->workers = std::make_unique<WorkerPool>(o.worker_threads, o.max_queued);
  impl_->server = std::make_unique<http::Server>(*impl_->pool, so, *impl_);
  impl_->pool->Start();
  if (Status s = impl_->server->Start(); !s.ok()) {
    impl_->server.reset();
    impl_->workers->Stop();
    impl_->pool->Stop();
    impl_->pool->Join();
    impl_->workers.reset();
    impl_->pool.reset();
    return s;
  }
  impl_->started = true;
  return Status::Ok();
}

uint16_t ParticipantServer::port() const {
  return impl_->started && !impl_->stopped ? impl_->server->port() : 0;
}

std::string ParticipantServer::base_url() const {
  return "http://" + impl_->options.host + ":" + std::to_string(port());
}

void ParticipantServer::Stop() {
  if (!impl_->started || impl_->stopped) return;
  impl_->stopped = true;
  impl_->server->Stop();
  impl_->workers->Stop();  // queued requests answered 503, running handlers finish
  impl_->pool->Stop();
  impl_->pool->Join();
  impl_->server.reset();
  impl_->workers.reset();
  impl_->pool.reset();
}

}  // namespace dtx
