// Text for the terminal from the admin API's JSON: the status table, the event list and
// the one-line results of actions.
#include "proxy/ctl/render.hpp"

#include <algorithm>
#include <optional>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <boost/json/array.hpp>
#include <boost/json/object.hpp>

namespace pgf::ctl {

namespace json = boost::json;

namespace {

constexpr std::string_view missing = "-";
// last_error can be a whole libpq message; the NOTE column keeps it to one short line.
constexpr std::size_t max_note_length = 60;

using row = std::vector<std::string>;

const json::value* member(const json::value& value, std::string_view key) {
  const auto* object = value.if_object();
  return object ? object->if_contains(key) : nullptr;
}

bool is_true(const json::value* value) {
  return value && value->is_bool() && value->get_bool();
}

std::string text_of(const json::value* value) {
  if (!value || !value->is_string() || value->get_string().empty()) {
    return std::string(missing);
  }
  return printable(value->get_string());
}

std::string number_of(const json::value* value) {
  if (!value) {
    return std::string(missing);
  }
  if (value->is_int64()) {
    return std::to_string(value->get_int64());
  }
  if (value->is_uint64()) {
    return std::to_string(value->get_uint64());
  }
  if (value->is_double()) {
    return fmt::format("{}", value->get_double());
  }
  return std::string(missing);
}

std::optional<double> double_of(const json::value* value) {
  if (!value || !value->is_number()) {
    return std::nullopt;
  }
  boost::system::error_code ec;
  auto number = value->to_number<double>(ec);
  if (ec) {
    return std::nullopt;
  }
  return number;
}

std::string yes_no(const json::value* value) {
  if (!value || !value->is_bool()) {
    return std::string(missing);
  }
  return value->get_bool() ? "yes" : "no";
}

// The strings of an array member; other elements are skipped.
std::vector<std::string> strings_of(const json::value* value) {
  std::vector<std::string> out;
  if (!value || !value->is_array()) {
    return out;
  }
  for (const auto& element : value->get_array()) {
    if (element.is_string()) {
      out.push_back(printable(element.get_string()));
    }
  }
  return out;
}

// The first line of `text`, trimmed, cut to `limit` bytes.
std::string one_line(std::string_view text, std::size_t limit) {
  auto line = text.substr(0, text.find_first_of("\r\n"));
  auto first = line.find_first_not_of(" \t");
  if (first == std::string_view::npos) {
    return {};
  }
  line = line.substr(first, line.find_last_not_of(" \t") + 1 - first);
  if (line.size() > limit) {
    return printable(line.substr(0, limit)) + "...";
  }
  return printable(line);
}

// Rows in columns two spaces apart; the first row is the header. Widths count bytes, which
// suits the ASCII names, states and numbers; the last column, the only one holding free
// text, is never padded.
std::string format_table(const std::vector<row>& rows, const std::vector<bool>& is_right_aligned) {
  std::vector<std::size_t> widths(is_right_aligned.size(), 0);
  for (const auto& r : rows) {
    for (std::size_t i = 0; i < r.size() && i < widths.size(); ++i) {
      widths[i] = std::max(widths[i], r[i].size());
    }
  }

  std::string out;
  for (const auto& r : rows) {
    std::string line;
    for (std::size_t i = 0; i < r.size() && i < widths.size(); ++i) {
      if (i > 0) {
        line += "  ";
      }
      if (i + 1 == widths.size()) {
        line += r[i];
      } else if (is_right_aligned[i]) {
        line += fmt::format("{:>{}}", r[i], widths[i]);
      } else {
        line += fmt::format("{:<{}}", r[i], widths[i]);
      }
    }
    line.erase(line.find_last_not_of(' ') + 1);
    out += line;
    out += '\n';
  }
  return out;
}

std::string status_header(const json::value& status) {
  const auto* active = member(status, "active");
  auto active_name = active && active->is_null() ? std::string("none") : text_of(active);
  const auto* paused = member(status, "paused");
  auto line = fmt::format("active: {}   epoch: {}   paused: {}", active_name,
                          number_of(member(status, "epoch")), yes_no(paused));

  const auto* pause_reason = member(status, "pause_reason");
  if (is_true(paused) && pause_reason && pause_reason->is_string() &&
      !pause_reason->get_string().empty()) {
    line += fmt::format(" ({})", one_line(pause_reason->get_string(), max_note_length));
  }
  auto fenced = strings_of(member(status, "fenced"));
  if (!fenced.empty()) {
    line += fmt::format("   fenced: {}", fmt::join(fenced, ", "));
  }
  return line + "\n";
}

std::string backend_note(const json::value& backend) {
  std::vector<std::string> notes;
  if (is_true(member(backend, "disabled"))) {
    notes.emplace_back("disabled");
  }
  if (is_true(member(backend, "fenced"))) {
    notes.emplace_back("fenced");
  }
  // Why it cannot take work, else the last probe error.
  const auto* why = member(backend, "why_not");
  const auto* error = member(backend, "last_error");
  bool has_why = why && why->is_string() && !why->get_string().empty() &&
                 !is_true(member(backend, "disabled")) && !is_true(member(backend, "fenced"));
  const auto* shown = has_why ? why : error;
  if (shown && shown->is_string()) {
    if (auto text = one_line(shown->get_string(), max_note_length); !text.empty()) {
      notes.push_back(std::move(text));
    }
  }
  return fmt::format("{}", fmt::join(notes, "; "));
}

row backend_row(const json::value& backend) {
  // latency_ms is the last successful probe's: stale, or 0 when there was none, unless the
  // backend is up now.
  auto state = text_of(member(backend, "state"));
  auto latency = state == "up" ? double_of(member(backend, "latency_ms")) : std::nullopt;
  return {text_of(member(backend, "name")),
          number_of(member(backend, "priority")),
          state,
          text_of(member(backend, "role")),
          latency ? fmt::format("{:.2f}ms", *latency) : std::string(missing),
          yes_no(member(backend, "active")),
          yes_no(member(backend, "eligible")),
          backend_note(backend)};
}

// What changed: "pg1->pg2" for a switch (a null end shows as "none"); "pg2: up->down" for a
// state event, whose from and to are statuses of the backend named; else the backend.
std::string event_change(const json::value& event) {
  const auto* from = member(event, "from");
  const auto* to = member(event, "to");
  const auto* backend = member(event, "backend");
  bool has_from = from && from->is_string();
  bool has_to = to && to->is_string();
  bool has_backend = backend && backend->is_string() && !backend->get_string().empty();
  if (!has_from && !has_to) {
    return text_of(backend);
  }

  auto change = fmt::format("{}->{}", has_from ? printable(from->get_string()) : "none",
                            has_to ? printable(to->get_string()) : "none");
  if (has_backend) {
    return fmt::format("{}: {}", printable(backend->get_string()), change);
  }
  return change;
}

row event_row(const json::value& event) {
  const auto* reason = member(event, "reason");
  return {text_of(member(event, "time")),
          text_of(member(event, "kind")),
          number_of(member(event, "epoch")),
          event_change(event),
          text_of(member(event, "who")),
          reason && reason->is_string() ? printable(reason->get_string()) : std::string()};
}

}  // namespace

std::string printable(std::string_view text) {
  std::string out(text);
  for (auto& c : out) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
      c = ' ';
    }
  }
  return out;
}

std::string render_status(const json::value& status) {
  auto out = status_header(status);
  const auto* backends = member(status, "backends");
  if (!backends || !backends->is_array() || backends->get_array().empty()) {
    return out + "no backends\n";
  }

  std::vector<row> rows{{"NAME", "PRIO", "STATE", "ROLE", "LATENCY", "ACTIVE", "ELIGIBLE", "NOTE"}};
  for (const auto& backend : backends->get_array()) {
    rows.push_back(backend_row(backend));
  }
  return out + format_table(rows, {false, true, false, false, true, false, false, false});
}

std::string render_events(const json::value& events) {
  const auto* list = member(events, "events");
  if (!list || !list->is_array() || list->get_array().empty()) {
    return "no events\n";
  }

  std::vector<row> rows{{"TIME", "KIND", "EPOCH", "CHANGE", "WHO", "REASON"}};
  for (const auto& event : list->get_array()) {
    rows.push_back(event_row(event));
  }
  return format_table(rows, {false, false, true, false, false, false});
}

std::string render_action(std::string_view what, const json::value& answer) {
  std::vector<std::string> details;
  if (const auto* epoch = member(answer, "epoch"); epoch && epoch->is_number()) {
    details.push_back("epoch " + number_of(epoch));
  }
  if (const auto* active = member(answer, "active"); active && active->is_string()) {
    details.push_back("active " + printable(active->get_string()));
  } else if (active && active->is_null()) {
    details.emplace_back("no active backend");
  }
  // pause and resume say when they found things as asked already.
  const auto* changed = member(answer, "changed");
  bool is_unchanged = changed && changed->is_bool() && !changed->get_bool();
  auto verdict = is_unchanged ? "nothing to do, already so" : "done";
  auto out = details.empty()
                 ? fmt::format("{}: ok\n", printable(what))
                 : fmt::format("{}: {} ({})\n", printable(what), verdict, fmt::join(details, ", "));

  // reload's answer: what it noticed, and the keys that changed but wait for a restart.
  for (const auto& warning : strings_of(member(answer, "warnings"))) {
    out += fmt::format("warning: {}\n", warning);
  }
  auto restart = strings_of(member(answer, "restart_required"));
  if (!restart.empty()) {
    out += fmt::format("takes effect after a restart: {}\n", fmt::join(restart, ", "));
  }
  return out;
}

}  // namespace pgf::ctl
