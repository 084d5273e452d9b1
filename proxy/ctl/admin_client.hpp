// The HTTP side of `pgfailover ctl`: one request to the admin API, one answer.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <variant>

#include "proxy/ctl/ctl.hpp"

namespace pgf::ctl {

// Sends `req` to `address` and returns the answer, whatever its status; or, when there is
// no usable answer, a message naming the address and what went wrong.
//
// Blocks the calling thread: runs its own io_context until done. Looking up, connecting,
// sending and reading share one deadline, `timeout` from the call; only the name lookup
// cannot be cut short by it. The token, when given, goes in "Authorization: Bearer
// <token>" and into no message.
std::variant<reply, std::string> exchange(const admin_address& address, const request& req,
                                          const std::optional<std::string>& token,
                                          std::chrono::milliseconds timeout);

}  // namespace pgf::ctl
