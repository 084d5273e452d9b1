// The probes and the checker against a real PostgreSQL 15 server started by the suite:
// states, reasons, timing under real faults (immediate shutdown, SIGSTOP, a refused port,
// a listener that never answers), role flags, ready_query, reload and on-demand probes.
// One cluster is shared by the whole suite because initdb alone takes seconds.
#include <fcntl.h>
#include <grp.h>
#include <netinet/in.h>
#include <pwd.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>
#include <libpq-fe.h>

#include "health/checker.hpp"

namespace pgf::health {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;
using steady = std::chrono::steady_clock;

const fs::path pg_bin = "/usr/lib/postgresql/15/bin";

// Room for a loaded machine on top of the fall * (interval + timeout) detection bound.
constexpr auto slack = 1s;

std::uint16_t free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  socklen_t length = sizeof addr;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &length);
  ::close(fd);
  return ntohs(addr.sin_port);
}

// A loopback listener that never accepts: the kernel completes the handshake, then nothing
// ever answers the startup packet, as with a frozen server or a black-holed link.
class silent_listener {
 public:
  silent_listener() {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
    ::listen(fd_, 16);
    socklen_t length = sizeof addr;
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &length);
    port_ = ntohs(addr.sin_port);
  }
  ~silent_listener() { ::close(fd_); }
  std::uint16_t port() const { return port_; }

 private:
  int fd_ = -1;
  std::uint16_t port_ = 0;
};

// initdb, postgres and pg_ctl refuse to run as root; the cluster then belongs to the
// `postgres` account and its processes drop to it.
struct server_account {
  bool is_needed = false;
  uid_t uid = 0;
  gid_t gid = 0;
};

class pg_cluster {
 public:
  bool create(std::string& problem) {
    if (!find_account(problem)) {
      return false;
    }
    // Memory-backed when the machine has it: the cluster is written afresh for every
    // process and a disk makes that the slowest step.
    std::string pattern =
        ::access("/dev/shm", W_OK) == 0 ? "/dev/shm/pgf-health-XXXXXX" : "/tmp/pgf-health-XXXXXX";
    if (::mkdtemp(pattern.data()) == nullptr) {
      problem = "mkdtemp failed";
      return false;
    }
    dir_ = pattern;
    give_to_account(dir_);
    port_ = free_port();

    if (!copy_template() && run(initdb_command(data_dir())) != 0) {
      problem = "initdb failed, see " + (dir_ / "command.log").string();
      return false;
    }
    write_hba();
    return true;
  }

  bool start(std::string& problem) {
    std::vector<std::string> argv{(pg_bin / "postgres").string(),
                                  "-D",
                                  data_dir(),
                                  "-p",
                                  std::to_string(port_),
                                  "-k",
                                  dir_.string(),
                                  "-c",
                                  "listen_addresses=127.0.0.1",
                                  "-c",
                                  "fsync=off",
                                  "-c",
                                  "max_connections=40"};
    pid_ = spawn(argv, dir_ / "server.log");
    if (pid_ <= 0 || !wait_until_accepting(15s)) {
      problem = "postgres did not start, see " + (dir_ / "server.log").string();
      return false;
    }
    return true;
  }

  bool is_running() const { return pid_ > 0 && ::kill(pid_, 0) == 0; }

  // What an operator's emergency stop does: no checkpoint, children killed at once.
  void stop_immediately() {
    run({(pg_bin / "pg_ctl").string(), "stop", "-D", data_dir(), "-m", "immediate", "-w"});
    reap(5s);
  }

  // A smart shutdown waits for existing sessions and refuses new ones meanwhile.
  void begin_smart_shutdown() {
    run({(pg_bin / "pg_ctl").string(), "stop", "-D", data_dir(), "-m", "smart", "-W"});
  }

  bool wait_for_exit(std::chrono::seconds limit) { return pid_ <= 0 || reap(limit); }

  // A frozen machine: the postmaster and every backend stop. Each backend leads its own
  // process group (PostgreSQL calls setsid in every child), so they are found by parent.
  void freeze() { signal_all(SIGSTOP); }
  void thaw() { signal_all(SIGCONT); }

  // Stop by PID: fast shutdown, then SIGKILL if it takes too long.
  void stop() {
    if (pid_ <= 0) {
      return;
    }
    thaw();
    ::kill(pid_, SIGINT);
    if (!reap(10s)) {
      ::kill(pid_, SIGKILL);
      reap(5s);
    }
  }

  void remove() {
    std::error_code ignored;
    if (!dir_.empty()) {
      fs::remove_all(dir_, ignored);
    }
  }

  // Runs one statement over a blocking libpq connection; the first value, or the error.
  std::string sql(const std::string& statement) const {
    std::string conninfo = "host=127.0.0.1 port=" + std::to_string(port_) +
                           " user=postgres dbname=postgres connect_timeout=5";
    PGconn* conn = PQconnectdb(conninfo.c_str());
    std::string answer;
    if (PQstatus(conn) != CONNECTION_OK) {
      answer = std::string("error: ") + PQerrorMessage(conn);
      PQfinish(conn);
      return answer;
    }
    PGresult* result = PQexec(conn, statement.c_str());
    if (PQresultStatus(result) == PGRES_TUPLES_OK && PQntuples(result) > 0) {
      answer = PQgetvalue(result, 0, 0);
    } else if (PQresultStatus(result) == PGRES_FATAL_ERROR) {
      answer = std::string("error: ") + PQresultErrorMessage(result);
    }
    PQclear(result);
    PQfinish(conn);
    return answer;
  }

  std::uint16_t port() const { return port_; }
  pid_t pid() const { return pid_; }
  const fs::path& dir() const { return dir_; }

 private:
  std::string data_dir() const { return (dir_ / "data").string(); }

  static std::vector<std::string> initdb_command(const std::string& data) {
    return {(pg_bin / "initdb").string(),
            "-D",
            data,
            "-U",
            "postgres",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
            "--no-instructions",
            "--wal-segsize=1"};
  }

  // ctest runs every case in a process of its own, and initdb costs seconds where a copy
  // costs a fraction of one; so one initdb'd directory is kept beside the test binary and
  // copied. It is built under a lock in a staging folder and renamed into place, so a
  // half-built template is never seen. On any problem the caller runs initdb itself.
  bool copy_template() const {
    std::error_code ec;
    fs::path home = fs::read_symlink("/proc/self/exe", ec).parent_path();
    if (ec || home.empty()) {
      return false;
    }
    fs::path templ = home / "pg15-cluster-template";
    int lock = ::open((home / "pg15-cluster-template.lock").c_str(), O_CREAT | O_RDWR, 0644);
    if (lock < 0) {
      return false;
    }
    ::flock(lock, LOCK_EX);
    bool is_ready = fs::exists(templ / "PG_VERSION", ec) || build_template(home, templ);
    ::close(lock);

    return is_ready && run({"/bin/cp", "-a", templ.string(), data_dir()}) == 0;
  }

  bool build_template(const fs::path& home, const fs::path& templ) const {
    std::error_code ec;
    fs::path staging = home / ("pg15-cluster-template.staging-" + std::to_string(::getpid()));
    fs::remove_all(staging, ec);
    fs::create_directory(staging, ec);
    give_to_account(staging);
    bool is_built = !ec && run(initdb_command((staging / "data").string())) == 0;
    if (is_built) {
      fs::rename(staging / "data", templ, ec);
    }
    fs::remove_all(staging, ec);
    return is_built && fs::exists(templ / "PG_VERSION", ec);
  }

  bool find_account(std::string& problem) {
    if (::geteuid() != 0) {
      return true;
    }
    const passwd* pw = ::getpwnam("postgres");
    if (pw == nullptr) {
      problem = "running as root and there is no postgres account to run the server";
      return false;
    }
    account_ = {true, pw->pw_uid, pw->pw_gid};
    return true;
  }

  void give_to_account(const fs::path& path) const {
    if (account_.is_needed) {
      [[maybe_unused]] int ignored = ::chown(path.c_str(), account_.uid, account_.gid);
    }
  }

  // Trust for everyone but one role that must log in with a SCRAM password.
  void write_hba() const {
    fs::path hba = dir_ / "data" / "pg_hba.conf";
    std::ofstream out(hba, std::ios::trunc);
    out << "local all all trust\n"
        << "host all probe_pw 127.0.0.1/32 scram-sha-256\n"
        << "host all all 127.0.0.1/32 trust\n";
    out.close();
    give_to_account(hba);
  }

  // The child drops to the server account and writes to `log`; only async-signal-safe
  // calls happen between fork and exec.
  pid_t spawn(const std::vector<std::string>& args, const fs::path& log) const {
    std::vector<char*> argv;
    for (const std::string& arg : args) {
      argv.push_back(const_cast<char*>(arg.c_str()));
    }
    argv.push_back(nullptr);
    int out = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    give_to_account(log);

    pid_t child = ::fork();
    if (child == 0) {
      ::dup2(out, 1);
      ::dup2(out, 2);
      if (account_.is_needed && (::setgid(account_.gid) != 0 || ::setgroups(0, nullptr) != 0 ||
                                 ::setuid(account_.uid) != 0)) {
        ::_exit(126);
      }
      ::execv(argv[0], argv.data());
      ::_exit(127);
    }
    ::close(out);
    return child;
  }

  int run(const std::vector<std::string>& args) const {
    pid_t child = spawn(args, dir_ / "command.log");
    int status = 0;
    if (child <= 0 || ::waitpid(child, &status, 0) != child) {
      return -1;
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  }

  bool wait_until_accepting(std::chrono::seconds limit) const {
    std::string port = std::to_string(port_);
    const char* keywords[] = {"host", "port", "dbname", "user", "connect_timeout", nullptr};
    const char* values[] = {"127.0.0.1", port.c_str(), "postgres", "postgres", "1", nullptr};
    auto deadline = steady::now() + limit;
    while (steady::now() < deadline) {
      if (PQpingParams(keywords, values, 0) == PQPING_OK) {
        return true;
      }
      std::this_thread::sleep_for(50ms);
    }
    return false;
  }

  bool reap(std::chrono::seconds limit) {
    auto deadline = steady::now() + limit;
    while (steady::now() < deadline) {
      int status = 0;
      pid_t done = ::waitpid(pid_, &status, WNOHANG);
      if (done == pid_ || done < 0) {
        pid_ = -1;
        return true;
      }
      std::this_thread::sleep_for(20ms);
    }
    return false;
  }

  // The postmaster first, so that it cannot fork a backend we would miss.
  void signal_all(int signal) const {
    if (pid_ <= 0) {
      return;
    }
    if (signal == SIGSTOP) {
      ::kill(pid_, signal);
    }
    for (pid_t child : children()) {
      ::kill(child, signal);
    }
    if (signal != SIGSTOP) {
      ::kill(pid_, signal);
    }
  }

  std::vector<pid_t> children() const {
    std::vector<pid_t> found;
    std::error_code ec;
    for (const auto& entry : fs::directory_iterator("/proc", ec)) {
      std::ifstream stat(entry.path() / "stat");
      std::string line;
      if (!std::getline(stat, line)) {
        continue;
      }
      // pid (comm) state ppid ...; comm may hold spaces, so read after the last ')'.
      std::size_t close = line.rfind(')');
      if (close == std::string::npos) {
        continue;
      }
      char state = 0;
      int parent = 0;
      if (std::sscanf(line.c_str() + close + 1, " %c %d", &state, &parent) == 2 && parent == pid_) {
        found.push_back(static_cast<pid_t>(std::stoi(entry.path().filename().string())));
      }
    }
    return found;
  }

  server_account account_;
  fs::path dir_;
  std::uint16_t port_ = 0;
  pid_t pid_ = -1;
};

// Everything on_change delivered, for tests that assert what the router would see.
class change_log {
 public:
  checker::change_handler handler() {
    return [this](health_view_ptr view) {
      std::lock_guard lock(mutex_);
      views_.push_back(std::move(view));
    };
  }

  bool any(const std::function<bool(const health_view&)>& match) const {
    std::lock_guard lock(mutex_);
    for (const health_view_ptr& view : views_) {
      if (match(*view)) {
        return true;
      }
    }
    return false;
  }

  std::size_t size() const {
    std::lock_guard lock(mutex_);
    return views_.size();
  }

 private:
  mutable std::mutex mutex_;
  std::vector<health_view_ptr> views_;
};

health_view_ptr wait_for(const checker& c, const std::function<bool(const health_view&)>& match,
                         std::chrono::milliseconds limit = 5s) {
  auto deadline = steady::now() + limit;
  for (;;) {
    health_view_ptr view = c.current();
    if (match(*view)) {
      return view;
    }
    if (steady::now() >= deadline) {
      return nullptr;
    }
    std::this_thread::sleep_for(5ms);
  }
}

bool is_up(const health_view& view) {
  return view.backends.size() == 1 && view.backends[0].state == backend_state::up;
}

bool is_down(const health_view& view) {
  return view.backends.size() == 1 && view.backends[0].state == backend_state::down;
}

class ProbeRealServerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    cluster_ = new pg_cluster();
    if (!cluster_->create(problem_) || !cluster_->start(problem_)) {
      return;
    }
    cluster_->sql("CREATE ROLE probe_pw LOGIN PASSWORD 'right-password'");
  }

  static void TearDownTestSuite() {
    cluster_->stop();
    cluster_->remove();
    delete cluster_;
    cluster_ = nullptr;
  }

  // A test that killed the server leaves it to the next one to bring it back.
  void SetUp() override {
    ASSERT_TRUE(problem_.empty()) << problem_;
    if (!cluster_->is_running()) {
      ASSERT_TRUE(cluster_->start(problem_)) << problem_;
    }
  }

  static probe_target server_target(std::string name = "pg-1") {
    probe_target target;
    target.name = std::move(name);
    target.host = "127.0.0.1";
    target.port = cluster_->port();
    target.user = "postgres";
    target.dbname = "postgres";
    return target;
  }

  static check_settings fast_settings() {
    check_settings settings;
    settings.interval = 100ms;
    settings.timeout = 300ms;
    settings.fall = 2;
    settings.rise = 2;
    return settings;
  }

  // Check connections the server sees, waiting up to `limit` for `expected`.
  static int wait_for_check_connections(int expected, std::chrono::milliseconds limit = 3s) {
    auto deadline = steady::now() + limit;
    int count = -1;
    while (steady::now() < deadline) {
      count = std::atoi(cluster_
                            ->sql("SELECT count(*) FROM pg_stat_activity WHERE "
                                  "application_name = 'pgfailover-health'")
                            .c_str());
      if (count == expected) {
        break;
      }
      std::this_thread::sleep_for(20ms);
    }
    return count;
  }

  static pg_cluster* cluster_;
  static std::string problem_;
};

pg_cluster* ProbeRealServerTest::cluster_ = nullptr;
std::string ProbeRealServerTest::problem_;

TEST_F(ProbeRealServerTest, ComesUpAfterStartWithRoleAndFlags) {
  change_log changes;
  checker c({server_target()}, fast_settings(), changes.handler());
  ASSERT_EQ(c.current()->backends.at(0).state, backend_state::unknown);
  ASSERT_FALSE(c.current()->first_round_complete);

  c.start();
  health_view_ptr view = wait_for(c, is_up, 3s);

  ASSERT_NE(view, nullptr);
  const backend_health& b = view->backends[0];
  EXPECT_EQ(b.name, "pg-1");
  EXPECT_EQ(b.role, backend_role::primary);
  EXPECT_FALSE(b.read_only);
  EXPECT_TRUE(b.ready);
  EXPECT_EQ(b.last_error, "");
  EXPECT_GT(b.latency.count(), 0);
  EXPECT_TRUE(view->first_round_complete);
  EXPECT_TRUE(changes.any([](const health_view& v) { return is_up(v) && v.first_round_complete; }));
}

TEST_F(ProbeRealServerTest, ReusesOneCheckConnectionNamedForTheProxy) {
  checker c({server_target()}, fast_settings(), {});
  c.start();
  ASSERT_NE(wait_for(c, [](const health_view& v) { return v.backends[0].probes >= 5; }), nullptr);

  EXPECT_EQ(wait_for_check_connections(1), 1);

  c.stop();
  EXPECT_EQ(wait_for_check_connections(0), 0);
}

TEST_F(ProbeRealServerTest, ConnectsThroughUnixSocketDirectory) {
  probe_target target = server_target();
  target.host = cluster_->dir().string();
  checker c({target}, fast_settings(), {});

  c.start();

  health_view_ptr view = wait_for(c, is_up, 3s);
  ASSERT_NE(view, nullptr) << c.current()->backends[0].last_error;
  EXPECT_EQ(view->backends[0].role, backend_role::primary);
}

TEST_F(ProbeRealServerTest, ResolvesHostNameBeforeConnecting) {
  probe_target target = server_target();
  target.host = "localhost";
  checker c({target}, fast_settings(), {});

  c.start();

  health_view_ptr view = wait_for(c, is_up, 3s);
  ASSERT_NE(view, nullptr) << c.current()->backends[0].last_error;
}

TEST_F(ProbeRealServerTest, UnresolvableHostIsDownAndSaysSo) {
  probe_target target = server_target();
  target.host = "no-such-host.invalid";
  checker c({target}, fast_settings(), {});

  c.start();

  health_view_ptr view = wait_for(c, is_down, 3s);
  ASSERT_NE(view, nullptr);
  EXPECT_TRUE(
      view->backends[0].last_error.starts_with("could not resolve host \"no-such-host.invalid\""))
      << view->backends[0].last_error;
}

TEST_F(ProbeRealServerTest, RefusedPortIsDownWithConnectionRefused) {
  probe_target target = server_target();
  target.port = free_port();
  checker c({target}, fast_settings(), {});

  c.start();

  health_view_ptr view = wait_for(c, is_down, 3s);
  ASSERT_NE(view, nullptr);
  EXPECT_EQ(view->backends[0].last_error, "connection refused");
  EXPECT_TRUE(view->first_round_complete);
}

TEST_F(ProbeRealServerTest, DownBackendIsProbedAtIntervalNotHammered) {
  probe_target target = server_target();
  target.port = free_port();
  check_settings settings = fast_settings();
  settings.interval = 5s;
  checker c({target}, settings, {});

  c.start();
  std::this_thread::sleep_for(500ms);
  // Down after its first failure; a dead port (or a refused login) then waits the 5s
  // interval instead of being retried every min_probe_gap.
  EXPECT_EQ(c.current()->backends[0].state, backend_state::down);
  EXPECT_EQ(c.current()->backends[0].probes, 1u);

  // A sign of death reported by a session still probes at once.
  c.request_probe(0);
  auto probed_again =
      wait_for(c, [](const health_view& v) { return v.backends[0].probes >= 2; }, 2s);
  EXPECT_NE(probed_again, nullptr);
}

TEST_F(ProbeRealServerTest, UnansweredConnectionTimesOutWhileConnecting) {
  silent_listener listener;
  probe_target target = server_target();
  target.port = listener.port();
  checker c({target}, fast_settings(), {});

  auto started = steady::now();
  c.start();

  health_view_ptr view = wait_for(c, is_down, 3s);
  ASSERT_NE(view, nullptr);
  EXPECT_EQ(view->backends[0].last_error, "timeout after 300ms connecting");
  EXPECT_GE(steady::now() - started, 300ms);
}

TEST_F(ProbeRealServerTest, FailedLoginIsDownAndNeverShowsThePassword) {
  probe_target target = server_target();
  target.user = "probe_pw";
  target.password = "wrong-s3cret";
  checker c({target}, fast_settings(), {});

  c.start();

  health_view_ptr view = wait_for(c, is_down, 3s);
  ASSERT_NE(view, nullptr);
  EXPECT_EQ(view->backends[0].last_error, "password authentication failed for user \"probe_pw\"");
  EXPECT_EQ(view->backends[0].last_error.find("wrong-s3cret"), std::string::npos);
}

TEST_F(ProbeRealServerTest, LogsInWithThePassword) {
  probe_target target = server_target();
  target.user = "probe_pw";
  target.password = "right-password";
  checker c({target}, fast_settings(), {});

  c.start();

  ASSERT_NE(wait_for(c, is_up, 3s), nullptr) << c.current()->backends[0].last_error;
}

TEST_F(ProbeRealServerTest, ImmediateShutdownIsDownWithinFallProbes) {
  check_settings settings = fast_settings();
  change_log changes;
  checker c({server_target()}, settings, changes.handler());
  c.start();
  ASSERT_NE(wait_for(c, is_up, 3s), nullptr);

  cluster_->stop_immediately();
  auto stopped = steady::now();
  auto bound = settings.fall * (settings.interval + settings.timeout) + slack;
  health_view_ptr view = wait_for(c, is_down, 5s);
  auto took = steady::now() - stopped;

  ASSERT_NE(view, nullptr);
  EXPECT_LE(took, bound);
  EXPECT_EQ(view->backends[0].last_error, "connection refused");
  EXPECT_TRUE(changes.any(is_down));

  std::string problem;
  ASSERT_TRUE(cluster_->start(problem)) << problem;
  view = wait_for(c, is_up, 5s);
  ASSERT_NE(view, nullptr);
  EXPECT_GE(view->backends[0].consecutive_successes, settings.rise);
}

TEST_F(ProbeRealServerTest, RequestProbeNoticesSmartShutdownThroughAFreshConnection) {
  check_settings settings = fast_settings();
  settings.interval = 5s;
  checker c({server_target()}, settings, {});
  c.start();
  ASSERT_NE(wait_for(c, is_up, 3s), nullptr);

  cluster_->begin_smart_shutdown();
  c.request_probe(0);
  // The fresh connection replaces the check connection, which was the server's last
  // session: a smart shutdown may finish before the new connection arrives, so the probe
  // sees either the shutdown message or the closed port. Both must fail the probe well
  // before the 5 s interval would have.
  health_view_ptr view = wait_for(c, [](const health_view& v) {
    const auto& error = v.backends[0].last_error;
    return error == "the database system is shutting down" || error == "connection refused";
  });

  ASSERT_NE(view, nullptr) << c.current()->backends[0].last_error;
  EXPECT_NE(wait_for(c, is_down), nullptr);
  EXPECT_TRUE(cluster_->wait_for_exit(10s));
}

TEST_F(ProbeRealServerTest, FrozenServerTimesOutAndRecoversWhenThawed) {
  check_settings settings = fast_settings();
  checker c({server_target()}, settings, {});
  c.start();
  ASSERT_NE(wait_for(c, is_up, 3s), nullptr);

  cluster_->freeze();
  auto frozen = steady::now();
  auto bound = settings.fall * (settings.interval + settings.timeout) + slack;
  health_view_ptr view = wait_for(c, is_down, 5s);
  auto took = steady::now() - frozen;
  cluster_->thaw();

  ASSERT_NE(view, nullptr);
  EXPECT_LE(took, bound);
  EXPECT_TRUE(view->backends[0].last_error.starts_with("timeout after 300ms"))
      << view->backends[0].last_error;

  view = wait_for(c, is_up, 5s);
  ASSERT_NE(view, nullptr);
  EXPECT_EQ(view->backends[0].last_error, "");
}

TEST_F(ProbeRealServerTest, ReadOnlyDefaultIsReportedAndNotified) {
  change_log changes;
  checker c({server_target()}, fast_settings(), changes.handler());
  c.start();
  ASSERT_NE(wait_for(c, is_up, 3s), nullptr);

  cluster_->sql("ALTER SYSTEM SET default_transaction_read_only = on");
  cluster_->sql("SELECT pg_reload_conf()");
  health_view_ptr view = wait_for(c, [](const health_view& v) { return v.backends[0].read_only; });
  cluster_->sql("ALTER SYSTEM RESET default_transaction_read_only");
  cluster_->sql("SELECT pg_reload_conf()");

  ASSERT_NE(view, nullptr);
  EXPECT_EQ(view->backends[0].state, backend_state::up);
  EXPECT_TRUE(changes.any([](const health_view& v) { return v.backends[0].read_only; }));
  EXPECT_NE(wait_for(c, [](const health_view& v) { return !v.backends[0].read_only; }), nullptr);
}

TEST_F(ProbeRealServerTest, TrueReadyQueryIsReady) {
  probe_target target = server_target();
  target.ready_query = "SELECT 1 = 1";
  checker c({target}, fast_settings(), {});

  c.start();

  health_view_ptr view = wait_for(c, is_up, 3s);
  ASSERT_NE(view, nullptr);
  EXPECT_TRUE(view->backends[0].ready);
}

TEST_F(ProbeRealServerTest, FalseReadyQueryIsUpButNotReady) {
  probe_target target = server_target();
  target.ready_query = "select false";
  checker c({target}, fast_settings(), {});

  c.start();

  health_view_ptr view =
      wait_for(c, [](const health_view& v) { return v.backends[0].probes >= 3; });
  ASSERT_NE(view, nullptr);
  const backend_health& b = view->backends[0];
  EXPECT_EQ(b.state, backend_state::up);
  EXPECT_FALSE(b.ready);
  EXPECT_EQ(b.last_error, "ready_query returned false");
  EXPECT_EQ(b.failed_probes, 0u);
}

TEST_F(ProbeRealServerTest, FailingReadyQueryIsNotReadyRatherThanDown) {
  probe_target target = server_target();
  target.ready_query = "SELECT ok FROM no_such_heartbeat";
  checker c({target}, fast_settings(), {});

  c.start();

  health_view_ptr view =
      wait_for(c, [](const health_view& v) { return v.backends[0].probes >= 3; });
  ASSERT_NE(view, nullptr);
  const backend_health& b = view->backends[0];
  EXPECT_EQ(b.state, backend_state::up);
  EXPECT_FALSE(b.ready);
  EXPECT_EQ(b.last_error, "ready_query failed: relation \"no_such_heartbeat\" does not exist");
  EXPECT_EQ(wait_for_check_connections(1), 1);
}

TEST_F(ProbeRealServerTest, RequestProbeProbesWithoutWaitingForTheInterval) {
  check_settings settings = fast_settings();
  settings.interval = 5s;
  checker c({server_target()}, settings, {});
  c.start();
  ASSERT_NE(wait_for(c, is_up, 3s), nullptr);
  std::this_thread::sleep_for(300ms);
  ASSERT_EQ(c.current()->backends[0].probes, 1u);

  auto asked = steady::now();
  c.request_probe(0);
  health_view_ptr view =
      wait_for(c, [](const health_view& v) { return v.backends[0].probes >= 2; });

  ASSERT_NE(view, nullptr);
  EXPECT_LT(steady::now() - asked, 1s);
  c.request_probe(7);  // out of range: ignored
}

TEST_F(ProbeRealServerTest, ReloadKeepsStateOfUnchangedBackendsOnly) {
  probe_target kept = server_target("kept");
  probe_target dropped = server_target("dropped");
  dropped.port = free_port();
  change_log changes;
  checker c({kept, dropped}, fast_settings(), changes.handler());
  c.start();
  health_view_ptr before = wait_for(c, [](const health_view& v) {
    return v.backends[0].state == backend_state::up && v.backends[1].state == backend_state::down;
  });
  ASSERT_NE(before, nullptr);

  probe_target added = server_target("added");
  added.host = cluster_->dir().string();
  kept.ready_query = "select false";
  c.update_targets({added, kept});
  health_view_ptr after = wait_for(c, [](const health_view& v) {
    return v.backends.size() == 2 && v.backends[0].state == backend_state::up &&
           !v.backends[1].ready;
  });

  ASSERT_NE(after, nullptr);
  EXPECT_EQ(after->backends[0].name, "added");
  EXPECT_EQ(after->backends[1].name, "kept");
  EXPECT_EQ(after->backends[1].since, before->backends[0].since);
  EXPECT_GT(after->backends[1].probes, before->backends[0].probes);
  EXPECT_TRUE(changes.any([](const health_view& v) {
    return v.backends.size() == 2 && v.backends[0].name == "added";
  }));
  EXPECT_EQ(wait_for_check_connections(2), 2);
}

TEST_F(ProbeRealServerTest, StopInterruptsAProbeInFlight) {
  silent_listener listener;
  probe_target target = server_target();
  target.port = listener.port();
  check_settings settings = fast_settings();
  settings.timeout = 10s;
  checker c({target}, settings, {});
  c.start();
  std::this_thread::sleep_for(100ms);

  auto stopping = steady::now();
  c.stop();

  EXPECT_LT(steady::now() - stopping, 1s);
  EXPECT_EQ(c.current()->backends[0].probes, 0u);
}

}  // namespace
}  // namespace pgf::health
