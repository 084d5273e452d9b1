// Reading of each section of the file into its settings struct. Each function checks the
// rules that concern its own section only; rules across sections live in config.cpp.
#pragma once

#include <string>
#include <vector>

#include "proxy/config/table_reader.hpp"

namespace pgf::config::detail {

void read_proxy(table_reader& reader, proxy_settings& out);
void read_pool(table_reader& reader, pool_settings& out);
void read_health(table_reader& reader, health_settings& out);
void read_failover(table_reader& reader, failover_settings& out);
void read_admin(table_reader& reader, admin_settings& out);
void read_tls(table_reader& reader, tls_settings& out);

// One [[backend]]. `out.priority` stays 0 and `out.name` empty when they could not be read.
void read_backend(table_reader& reader, backend_config& out);
// One [[user]]; each [user.backends.NAME] must name one of `backend_names`.
void read_user(table_reader& reader, const std::vector<std::string>& backend_names,
               user_config& out);

}  // namespace pgf::config::detail
