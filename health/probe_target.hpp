// What the health checker needs to know to reach one backend: built by the proxy from the
// configuration, so that health/ depends on nothing of proxy/.
#pragma once

#include <cstdint>
#include <string>

namespace pgf::health {

struct probe_target {
  std::string name;  // the backend's configured name, used in the view and in logs
  std::string host;  // a host name, an IP address, or a Unix-socket directory ('/...')
  std::uint16_t port = 5432;
  std::string user;         // empty: libpq's default
  std::string password;     // empty: none; never logged, never part of an error text
  std::string dbname;       // empty: libpq's default (the user name)
  std::string ready_query;  // empty: none; otherwise must return one row whose first column
                            // is true for the backend to count as ready
  // The proxy's own server connections do not use TLS yet, so neither does the probe; pass
  // the backend URL's sslmode here once they do.
  std::string sslmode = "disable";

  // The same server: a backend whose name and address stay keeps its state across a reload.
  bool same_address(const probe_target& other) const {
    return name == other.name && host == other.host && port == other.port;
  }

  // The same login: anything else changed means the check connection must be reopened.
  bool same_login(const probe_target& other) const {
    return user == other.user && password == other.password && dbname == other.dbname &&
           sslmode == other.sslmode;
  }
};

}  // namespace pgf::health
