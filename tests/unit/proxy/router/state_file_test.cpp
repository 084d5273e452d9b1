// The router's state file: what it writes, what it reads back, and that a file it cannot
// trust stops the proxy instead of being guessed at. Each test works in a fresh temporary
// directory of its own.
#include "proxy/router/state_file.hpp"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <string>
#include <vector>

namespace pgf::router {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

// 2024-05-01T12:00:00.123Z
const std::chrono::system_clock::time_point written =
    std::chrono::system_clock::time_point{} + 1714564800s + 123ms;

persisted_state sample_state() {
  persisted_state state;
  state.epoch = 42;
  state.active = "rds";
  state.last_active = "rds";
  state.fenced = {"cloudsql", "supabase"};
  state.disabled = {"cloudsql"};
  return state;
}

class StateFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto name =
        std::string("pgf-state-") + ::testing::UnitTest::GetInstance()->current_test_info()->name();
    dir_ = fs::temp_directory_path() / (name + "-" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    path_ = (dir_ / "pgfailover.state").string();
  }

  void TearDown() override { fs::remove_all(dir_); }

  void put(const std::string& text) const {
    std::ofstream out(path_, std::ios::binary | std::ios::trunc);
    out << text;
  }

  std::string contents(const std::string& path) const {
    std::ifstream in(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
  }

  // The message read_state_file stops with; a test failure when the file reads.
  std::string refusal_of(const std::string& text) const {
    put(text);
    try {
      read_state_file(path_);
    } catch (const state_file_error& error) {
      return error.what();
    }
    ADD_FAILURE() << "the state file was accepted:\n" << text;
    return {};
  }

  fs::path dir_;
  std::string path_;
};

TEST_F(StateFileTest, MissingFileMeansAFreshStart) {
  EXPECT_EQ(read_state_file(path_), std::nullopt);
}

TEST_F(StateFileTest, FormatsTheDocumentedJson) {
  EXPECT_EQ(format_state(sample_state(), written),
            R"({"epoch":42,"active":"rds","last_active":"rds","fenced":["cloudsql","supabase"],)"
            R"("disabled":["cloudsql"],"written_at":"2024-05-01T12:00:00.123Z"})"
            "\n");
}

TEST_F(StateFileTest, FormatsNoActiveBackendAsNull) {
  persisted_state state;
  state.epoch = 3;
  state.last_active = "supabase";

  auto text = format_state(state, written);

  EXPECT_NE(text.find(R"("active":null)"), std::string::npos) << text;
  EXPECT_NE(text.find(R"("last_active":"supabase")"), std::string::npos) << text;
  EXPECT_NE(text.find(R"("fenced":[])"), std::string::npos) << text;
}

TEST_F(StateFileTest, ReadsBackWhatItWrote) {
  auto state = sample_state();

  ASSERT_EQ(write_state_file(path_, state, written), std::nullopt);
  auto read = read_state_file(path_);

  ASSERT_TRUE(read);
  EXPECT_EQ(*read, state);
  EXPECT_EQ(contents(path_), format_state(state, written));
}

TEST_F(StateFileTest, ReadsBackAStateWithNothingActive) {
  persisted_state state;
  state.epoch = 9;
  state.last_active = "supabase";
  state.fenced = {"rds"};

  ASSERT_EQ(write_state_file(path_, state, written), std::nullopt);

  EXPECT_EQ(read_state_file(path_), state);
}

TEST_F(StateFileTest, ReadsTheLargestEpoch) {
  persisted_state state;
  state.epoch = std::numeric_limits<std::uint64_t>::max();
  state.active = "rds";
  state.last_active = "rds";

  ASSERT_EQ(write_state_file(path_, state, written), std::nullopt);

  ASSERT_TRUE(read_state_file(path_));
  EXPECT_EQ(read_state_file(path_)->epoch, std::numeric_limits<std::uint64_t>::max());
}

TEST_F(StateFileTest, ReadsTheMinimalDocumentedFormat) {
  put(R"({"epoch": 5, "active": "rds", "fenced": ["supabase"]})");

  auto state = read_state_file(path_);

  ASSERT_TRUE(state);
  EXPECT_EQ(state->epoch, 5u);
  EXPECT_EQ(state->active, "rds");
  // An older file has no last_active: the active backend is the last one active.
  EXPECT_EQ(state->last_active, "rds");
  EXPECT_EQ(state->fenced, std::vector<std::string>{"supabase"});
  EXPECT_TRUE(state->disabled.empty());
}

TEST_F(StateFileTest, IgnoresUnknownKeys) {
  put(R"({"epoch": 1, "active": null, "fenced": [], "written_at": "x", "future": {"a": [1]}})");

  auto state = read_state_file(path_);

  ASSERT_TRUE(state);
  EXPECT_EQ(state->epoch, 1u);
  EXPECT_FALSE(state->active);
  EXPECT_FALSE(state->last_active);
}

TEST_F(StateFileTest, SortsAndDeduplicatesNames) {
  put(R"({"epoch": 1, "active": "a", "fenced": ["c", "b", "c"], "disabled": ["z", "y", "z"]})");

  auto state = read_state_file(path_);

  ASSERT_TRUE(state);
  EXPECT_EQ(state->fenced, (std::vector<std::string>{"b", "c"}));
  EXPECT_EQ(state->disabled, (std::vector<std::string>{"y", "z"}));
}

TEST_F(StateFileTest, RefusesMalformedJsonNamingTheFile) {
  auto message = refusal_of(R"({"epoch": 1, "active": "a", "fenced": [)");

  EXPECT_NE(message.find(path_), std::string::npos) << message;
  EXPECT_NE(message.find("not valid JSON"), std::string::npos) << message;
}

TEST_F(StateFileTest, RefusesAnEmptyFile) {
  EXPECT_NE(refusal_of("").find("not valid JSON"), std::string::npos);
}

TEST_F(StateFileTest, RefusesATruncatedWrite) {
  auto text = format_state(sample_state(), written);

  for (std::size_t size = 1; size + 2 < text.size(); size += 7) {
    SCOPED_TRACE(size);
    EXPECT_NE(refusal_of(text.substr(0, size)), "");
  }
}

TEST_F(StateFileTest, RefusesTrailingGarbage) {
  auto text = format_state(sample_state(), written);

  EXPECT_NE(refusal_of(text + text), "");
}

TEST_F(StateFileTest, RefusesANonObject) {
  EXPECT_NE(refusal_of(R"([1, 2, 3])").find("not a JSON object"), std::string::npos);
  EXPECT_NE(refusal_of(R"("rds")").find("not a JSON object"), std::string::npos);
}

TEST_F(StateFileTest, RefusesAMissingActiveKey) {
  EXPECT_NE(refusal_of(R"({"epoch": 1, "fenced": []})").find("\"active\" is missing"),
            std::string::npos);
}

TEST_F(StateFileTest, RefusesAMissingOrInvalidEpoch) {
  for (const char* epoch :
       {"", R"("epoch": -1,)", R"("epoch": "7",)", R"("epoch": 1.5,)", R"("epoch": null,)"}) {
    auto text = std::string("{") + epoch + R"("active": "a", "fenced": []})";
    EXPECT_NE(refusal_of(text).find("\"epoch\" must be a non-negative integer"), std::string::npos)
        << text;
  }
}

TEST_F(StateFileTest, RefusesInvalidNames) {
  EXPECT_NE(refusal_of(R"({"epoch": 1, "active": 3, "fenced": []})").find("\"active\""),
            std::string::npos);
  EXPECT_NE(refusal_of(R"({"epoch": 1, "active": "", "fenced": []})").find("\"active\""),
            std::string::npos);
  EXPECT_NE(refusal_of(R"({"epoch": 1, "active": null})").find("\"fenced\""), std::string::npos);
  EXPECT_NE(refusal_of(R"({"epoch": 1, "active": null, "fenced": "a"})").find("\"fenced\""),
            std::string::npos);
  EXPECT_NE(refusal_of(R"({"epoch": 1, "active": null, "fenced": ["a", 2]})").find("\"fenced\""),
            std::string::npos);
  EXPECT_NE(refusal_of(R"({"epoch": 1, "active": null, "fenced": [], "disabled": [null]})")
                .find("\"disabled\""),
            std::string::npos);
  EXPECT_NE(refusal_of(R"({"epoch": 1, "active": null, "fenced": [], "last_active": 1})")
                .find("\"last_active\""),
            std::string::npos);
}

TEST_F(StateFileTest, RefusesAnActiveBackendThatIsAlsoFenced) {
  auto message = refusal_of(R"({"epoch": 4, "active": "rds", "fenced": ["rds"]})");

  EXPECT_NE(message.find("the active backend rds is also listed as fenced"), std::string::npos)
      << message;
}

TEST_F(StateFileTest, RefusesAFileFarTooLargeToBeOurs) {
  std::string text = R"({"epoch": 1, "active": null, "fenced": [], "pad": ")";
  text += std::string(2 * 1024 * 1024, 'x');
  text += "\"}";

  EXPECT_NE(refusal_of(text).find("larger than 1MB"), std::string::npos);
}

TEST_F(StateFileTest, RefusesAPathThatCannotBeRead) {
  fs::create_directory(path_);

  try {
    read_state_file(path_);
    ADD_FAILURE() << "a directory was read as a state file";
  } catch (const state_file_error& error) {
    EXPECT_NE(std::string(error.what()).find(path_), std::string::npos) << error.what();
  }
}

TEST_F(StateFileTest, WriteReplacesTheOldFileAndLeavesNoTemporary) {
  auto first = sample_state();
  auto second = first;
  second.epoch = 43;
  second.active = "supabase";
  second.fenced = {"cloudsql", "rds"};

  ASSERT_EQ(write_state_file(path_, first, written), std::nullopt);
  ASSERT_EQ(write_state_file(path_, second, written + 1s), std::nullopt);

  EXPECT_EQ(read_state_file(path_), second);
  EXPECT_FALSE(fs::exists(path_ + ".tmp"));
  EXPECT_EQ(std::distance(fs::directory_iterator(dir_), fs::directory_iterator{}), 1);
}

// A reader that opened the old file keeps reading the whole old state: the new one arrives
// by rename, never by rewriting the old file in place where a crash could leave half of it.
TEST_F(StateFileTest, WriteReplacesTheFileByRenameNotInPlace) {
  auto old_state = sample_state();
  ASSERT_EQ(write_state_file(path_, old_state, written), std::nullopt);
  struct stat before {};
  ASSERT_EQ(::stat(path_.c_str(), &before), 0);
  std::ifstream old_reader(path_, std::ios::binary);
  ASSERT_TRUE(old_reader);

  auto new_state = old_state;
  new_state.epoch = 99;
  ASSERT_EQ(write_state_file(path_, new_state, written), std::nullopt);

  std::string old_text(std::istreambuf_iterator<char>(old_reader), {});
  EXPECT_EQ(old_text, format_state(old_state, written));
  struct stat after {};
  ASSERT_EQ(::stat(path_.c_str(), &after), 0);
  EXPECT_NE(before.st_ino, after.st_ino);
  EXPECT_EQ(read_state_file(path_)->epoch, 99u);
}

TEST_F(StateFileTest, FailedWriteKeepsTheOldFile) {
  auto old_state = sample_state();
  ASSERT_EQ(write_state_file(path_, old_state, written), std::nullopt);
  // The temporary file cannot be created when a directory stands in its place.
  fs::create_directory(path_ + ".tmp");

  auto new_state = old_state;
  new_state.epoch = 43;
  auto error = write_state_file(path_, new_state, written);

  ASSERT_TRUE(error);
  EXPECT_NE(error->find("cannot create"), std::string::npos) << *error;
  EXPECT_NE(error->find(path_ + ".tmp"), std::string::npos) << *error;
  EXPECT_EQ(read_state_file(path_), old_state);
}

TEST_F(StateFileTest, FailedRenameRemovesTheTemporary) {
  // A non-empty directory at the path: the rename over it fails.
  fs::create_directories(fs::path(path_) / "occupied");

  auto error = write_state_file(path_, sample_state(), written);

  ASSERT_TRUE(error);
  EXPECT_NE(error->find("cannot rename"), std::string::npos) << *error;
  EXPECT_FALSE(fs::exists(path_ + ".tmp"));
}

TEST_F(StateFileTest, WriteIntoAMissingDirectoryFails) {
  auto path = (dir_ / "missing" / "pgfailover.state").string();

  auto error = write_state_file(path, sample_state(), written);

  ASSERT_TRUE(error);
  EXPECT_NE(error->find("cannot create"), std::string::npos) << *error;
  EXPECT_FALSE(fs::exists(path));
}

TEST_F(StateFileTest, WritesARelativePathInTheWorkingDirectory) {
  auto previous = fs::current_path();
  fs::current_path(dir_);

  auto error = write_state_file("relative.state", sample_state(), written);
  auto read = read_state_file("relative.state");
  fs::current_path(previous);

  EXPECT_EQ(error, std::nullopt);
  EXPECT_EQ(read, sample_state());
  EXPECT_TRUE(fs::exists(dir_ / "relative.state"));
}

}  // namespace
}  // namespace pgf::router
