// IoPool (the runtime): the I/O threads of a process, one io_context per thread (DESIGN.md
// "Threading"). Work for one transaction is sent to one context (a shard), so it never runs on two
// threads at once.
//
// Thread-safety: construction, Start, Stop and Join from one controlling thread; Get/Next/running/
// InPoolThread from any. The destructor stops and joins. Objects bound to a context (sockets,
// timers, a Server, a Client) must be destroyed before the pool.
#pragma once

#include <atomic>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <cstddef>
#include <memory>
#include <thread>
#include <vector>

namespace dtx::runtime {

class IoPool {
 public:
  explicit IoPool(size_t threads);
  ~IoPool();
  IoPool(const IoPool&) = delete;
  IoPool& operator=(const IoPool&) = delete;

  size_t size() const { return contexts_.size(); }
  boost::asio::io_context& Get(size_t index) { return *contexts_[index % contexts_.size()]; }
  // Round-robin, e.g. for new connections.
  boost::asio::io_context& Next();

  // Runs each context on its own thread until Stop.
  void Start();
  void Stop();
  void Join();
  // True between Start and Stop: the contexts are being run by the pool's threads.
  bool running() const { return running_.load(std::memory_order_acquire); }
  // True when called from one of the pool's threads (while it runs a handler).
  bool InPoolThread() const;

 private:
  std::vector<std::unique_ptr<boost::asio::io_context>> contexts_;
  std::vector<
      std::unique_ptr<boost::asio::executor_work_guard<boost::asio::io_context::executor_type>>>
      guards_;
  std::vector<std::thread> threads_;
  std::atomic<size_t> next_{0};
  std::atomic<bool> running_{false};
};

}  // namespace dtx::runtime
