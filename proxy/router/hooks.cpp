// Running the on_switch hook on the hook thread.
#include "proxy/router/hooks.hpp"

#include <utility>

namespace pgf::router {

command_spec hook_command(const switch_hook_call& call) {
  command_spec spec;
  spec.command = call.command;
  spec.timeout = call.timeout;
  spec.environment = {
      {"PGFAILOVER_FROM", call.from.value_or("")},
      {"PGFAILOVER_TO", call.to.value_or("")},
      {"PGFAILOVER_EPOCH", std::to_string(call.epoch)},
      {"PGFAILOVER_REASON", call.reason},
      {"PGFAILOVER_DETAIL", call.detail},
  };
  return spec;
}

void switch_hooks::run(switch_hook_call call) {
  queue_.push([this, call = std::move(call)](std::stop_token stop) {
    auto result = run_shell_command(hook_command(call), stop);
    if (on_done_) {
      on_done_(call, result);
    }
  });
}

}  // namespace pgf::router
