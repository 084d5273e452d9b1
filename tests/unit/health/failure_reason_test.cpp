// Turning libpq 15's error messages (copied from what it prints) into short reasons.
#include "health/failure_reason.hpp"

#include <gtest/gtest.h>

namespace pgf::health {
namespace {

using namespace std::chrono_literals;

TEST(FailureReasonTest, RefusedTcpConnection) {
  EXPECT_EQ(describe_libpq_error("connection to server at \"127.0.0.1\", port 1 failed: "
                                 "Connection refused\n\tIs the server running on that host "
                                 "and accepting TCP/IP connections?\n"),
            "connection refused");
}

TEST(FailureReasonTest, RefusedConnectionToResolvedHost) {
  EXPECT_EQ(describe_libpq_error("connection to server at \"db.example.com\" (10.0.0.7), port "
                                 "5432 failed: Connection refused\n\tIs the server running?\n"),
            "connection refused");
}

TEST(FailureReasonTest, MissingUnixSocketLowersTheFirstLetter) {
  EXPECT_EQ(describe_libpq_error("connection to server on socket \"/tmp/.s.PGSQL.5\" failed: "
                                 "No such file or directory\n\tIs the server running locally "
                                 "and accepting connections on that socket?\n"),
            "no such file or directory");
}

TEST(FailureReasonTest, ServerFatalLosesPreambleAndSeverity) {
  EXPECT_EQ(describe_libpq_error("connection to server at \"127.0.0.1\", port 5432 failed: "
                                 "FATAL:  the database system is shutting down\n"),
            "the database system is shutting down");
}

TEST(FailureReasonTest, AuthenticationFailureKeepsTheUserName) {
  EXPECT_EQ(describe_libpq_error("connection to server at \"127.0.0.1\", port 5432 failed: "
                                 "FATAL:  password authentication failed for user \"probe\"\n"),
            "password authentication failed for user \"probe\"");
}

TEST(FailureReasonTest, ServerClosedTheConnection) {
  EXPECT_EQ(describe_libpq_error("server closed the connection unexpectedly\n\tThis probably "
                                 "means the server terminated abnormally\n\tbefore or while "
                                 "processing the request.\n"),
            "server closed the connection");
}

TEST(FailureReasonTest, ResetWhileReceiving) {
  EXPECT_EQ(describe_libpq_error("could not receive data from server: Connection reset by peer\n"),
            "connection reset");
}

TEST(FailureReasonTest, ReasonOnTheLineAfterThePreamble) {
  EXPECT_EQ(describe_libpq_error("connection to server at \"127.0.0.1\", port 5432 failed:\n"
                                 "  FATAL:  the database system is starting up\n"),
            "the database system is starting up");
}

TEST(FailureReasonTest, KeepsAcronymCapitalised) {
  EXPECT_EQ(describe_libpq_error("SSL SYSCALL error: EOF detected\n"),
            "SSL SYSCALL error: EOF detected");
}

TEST(FailureReasonTest, EmptyMessageStillSaysSomething) {
  EXPECT_EQ(describe_libpq_error(""), "unknown libpq error");
  EXPECT_EQ(describe_libpq_error("\n\n"), "unknown libpq error");
}

TEST(FailureReasonTest, TimeoutNamesDeadlineAndStage) {
  EXPECT_EQ(timeout_reason(400ms, "connecting"), "timeout after 400ms connecting");
}

}  // namespace
}  // namespace pgf::health
