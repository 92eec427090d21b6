// Awaitable adapters over the callback-based Store: the store's callback runs on a store thread,
// and the awaiting coroutine is resumed on its own executor (never on the store's thread).
#pragma once

#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <memory>
#include <utility>

#include "store/store.h"

namespace dtx::engine {

// Calls `start(callback)` and resumes the coroutine with the callback's argument.
// Arg is the callback's argument type (Status or Result<T>).
template <class Arg, class Start>
boost::asio::awaitable<Arg> AwaitStore(Start start) {
  return boost::asio::async_initiate<decltype(boost::asio::use_awaitable), void(Arg)>(
      [start = std::move(start)](auto handler) mutable {
        auto shared = std::make_shared<decltype(handler)>(std::move(handler));
        start([shared](Arg arg) mutable {
          auto ex = boost::asio::get_associated_executor(*shared);
          boost::asio::post(
              ex, [shared, arg = std::move(arg)]() mutable { (*shared)(std::move(arg)); });
        });
      },
      boost::asio::use_awaitable);
}

}  // namespace dtx::engine
