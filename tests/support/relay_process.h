// `dtx relay` as a child process for tests (relay_test, relay_dtx_test): started, SIGKILLed,
// terminated with SIGTERM after its ready line; and one-shot runs of `dtx relay ARGS`. The test
// target defines DTX_BINARY_PATH (the dtx binary of the build tree).
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace dtx {

using namespace std::chrono_literals;

// `dtx relay ...` as a child process; output to a log file.
class RelayProcess {
 public:
  RelayProcess(std::vector<std::string> args, std::string log)
      : args_(std::move(args)), log_(log) {}
  ~RelayProcess() { Kill(); }
  void Start() {
    std::error_code ec;
    auto size = std::filesystem::file_size(log_, ec);
    ready_offset_ = ec ? 0 : static_cast<size_t>(size);
    std::vector<std::string> a = {DTX_BINARY_PATH, "relay"};
    a.insert(a.end(), args_.begin(), args_.end());
    std::vector<char*> argv;
    for (std::string& s : a) argv.push_back(s.data());
    argv.push_back(nullptr);
    pid_ = ::fork();
    if (pid_ == 0) {
      int fd = ::open(log_.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
      ::dup2(fd, 1);
      ::dup2(fd, 2);
      ::execv(argv[0], argv.data());
      ::_exit(127);
    }
  }
  void Kill() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }
  int Terminate() {
    // A relay handles SIGTERM once it has started (its ready line): a SIGTERM just after a
    // restart would find the default action.
    for (int i = 0; i < 200 && !LogHas("dtx relay ready"); ++i) std::this_thread::sleep_for(50ms);
    ::kill(pid_, SIGTERM);
    int st = 0;
    // Bounded: a relay that ignores SIGTERM fails the test (-1) instead of hanging it.
    pid_t done = 0;
    for (int i = 0; i < 600 && (done = ::waitpid(pid_, &st, WNOHANG)) == 0; ++i) {
      std::this_thread::sleep_for(50ms);
    }
    if (done == 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, &st, 0);
      pid_ = -1;
      return -1;
    }
    pid_ = -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  }

 private:
  bool LogHas(const std::string& text) const {
    std::ifstream in(log_);
    std::string all((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    return all.rfind(text) != std::string::npos && all.rfind(text) >= ready_offset_;
  }

  std::vector<std::string> args_;
  std::string log_;
  size_t ready_offset_ = 0;  // the log's size at the last Start: a ready line after it counts
  int pid_ = -1;
};

// Runs `dtx relay ARGS` to its end; returns the exit code and the output.
inline std::pair<int, std::string> RunDtx(const std::string& args) {
  std::string cmd = std::string(DTX_BINARY_PATH) + " relay " + args + " 2>&1";
  FILE* f = ::popen(cmd.c_str(), "r");
  std::string out;
  char buf[512];
  while (std::fgets(buf, sizeof buf, f) != nullptr) out += buf;
  int st = ::pclose(f);
  return {WIFEXITED(st) ? WEXITSTATUS(st) : -1, out};
}

}  // namespace dtx
