#include "runtime/io_pool.h"

#include <spdlog/spdlog.h>

#include <exception>
#include <string>

#include "util/assert.h"

namespace dtx::runtime {
namespace {

// Runs one context until it is stopped. An exception escaping a handler is a bug somewhere else; it
// is logged and the context keeps running, so one bad handler does not silently kill an I/O thread.
void RunContext(boost::asio::io_context* context, size_t index) {
  for (;;) {
    try {
      context->run();
      return;
    } catch (const std::exception& e) {
      spdlog::error("io thread {}: exception escaped a handler: {}", index, e.what());
    } catch (...) {
      spdlog::error("io thread {}: unknown exception escaped a handler", index);
    }
  }
}

}  // namespace

IoPool::IoPool(size_t threads) {
  DTX_INVARIANT(threads > 0, "an IoPool needs at least one thread");
  contexts_.reserve(threads);
  for (size_t i = 0; i < threads; ++i) {
    // Concurrency hint 1: each context is run by exactly one thread, so Asio can skip its locking.
    contexts_.push_back(std::make_unique<boost::asio::io_context>(1));
  }
}

IoPool::~IoPool() {
  Stop();
  Join();
}

boost::asio::io_context& IoPool::Next() {
  return *contexts_[next_.fetch_add(1, std::memory_order_relaxed) % contexts_.size()];
}

void IoPool::Start() {
  DTX_INVARIANT(threads_.empty(), "IoPool::Start called twice without Join");
  for (auto& context : contexts_) {
    if (context->stopped()) context->restart();
    guards_.push_back(
        std::make_unique<boost::asio::executor_work_guard<boost::asio::io_context::executor_type>>(
            context->get_executor()));
  }
  running_.store(true, std::memory_order_release);
  for (size_t i = 0; i < contexts_.size(); ++i) {
    threads_.emplace_back(RunContext, contexts_[i].get(), i);
  }
}

void IoPool::Stop() {
  running_.store(false, std::memory_order_release);
  for (auto& guard : guards_) guard->reset();
  guards_.clear();
  for (auto& context : contexts_) context->stop();
}

void IoPool::Join() {
  for (auto& thread : threads_) {
    if (thread.joinable()) thread.join();
  }
  threads_.clear();
}

bool IoPool::InPoolThread() const {
  for (const auto& context : contexts_) {
    if (context->get_executor().running_in_this_thread()) return true;
  }
  return false;
}

}  // namespace dtx::runtime
