// Short, operator-readable reasons for a failed probe, made from libpq's messages. These
// texts appear in the health view, the admin API, the logs and in 57P03 errors to clients.
#pragma once

#include <chrono>
#include <string>
#include <string_view>

namespace pgf::health {

// The first meaningful line of a libpq error message, without the "connection to server
// at ... failed:" preamble or the severity: "connection refused", "connection reset",
// "server closed the connection", "the database system is shutting down". libpq never puts
// a password into a message, and this keeps nothing but the message.
// Limitation: the short forms are matched on libpq's English texts; with a translated
// libpq (LANG set to another language) the first line is kept as libpq wrote it.
std::string describe_libpq_error(std::string_view message);

// "timeout after 400ms connecting": what the probe was doing when its deadline passed.
std::string timeout_reason(std::chrono::milliseconds timeout, std::string_view stage);

}  // namespace pgf::health
