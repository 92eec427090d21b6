// A child process for the examples' demos: any executable (a service of the example, `dtx relay`),
// stdout on a pipe that Start reads (bounded, 20 s) until the child's ready line, stderr to a log
// file; stopped with SIGTERM (SIGKILL after 5 s) when the object goes, SIGKILLed (Kill9) to show a
// crash; dies with the demo (PR_SET_PDEATHSIG). Not thread-safe.
#pragma once

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <thread>
#include <vector>

namespace dtx_examples {

// A child process whose stdout is a pipe; Start waits (bounded) for its ready line. Stopped with
// SIGTERM (SIGKILL after 5 s) when the object goes; dies with the demo (PR_SET_PDEATHSIG).
class Process {
 public:
  ~Process() { Stop(); }
  bool Start(std::vector<std::string> args, const std::string& log, const std::string& ready) {
    int fds[2];
    if (::pipe(fds) != 0) return false;
    std::vector<char*> argv;
    for (std::string& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    pid_ = ::fork();
    if (pid_ == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
      ::dup2(fds[1], 1);
      ::dup2(fd, 2);
      ::close(fds[0]);
      ::execv(argv[0], argv.data());
      ::_exit(127);
    }
    ::close(fds[1]);
    out_ = fds[0];
    std::string line;
    for (auto until = std::chrono::steady_clock::now() + std::chrono::seconds(20);
         std::chrono::steady_clock::now() < until;) {
      pollfd p{out_, POLLIN, 0};
      if (::poll(&p, 1, 100) <= 0) continue;
      char c;
      if (::read(out_, &c, 1) != 1) return false;  // exited
      if (c != '\n') {
        line += c;
        continue;
      }
      if (line.starts_with(ready)) return true;
      line.clear();
    }
    return false;
  }
  void Kill9() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
    if (out_ >= 0) ::close(out_);
    pid_ = -1;
    out_ = -1;
  }
  void Stop() {
    if (pid_ > 0) {
      ::kill(pid_, SIGTERM);
      for (int i = 0; i < 500 && ::waitpid(pid_, nullptr, WNOHANG) == 0; ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
        if (i == 499) {
          ::kill(pid_, SIGKILL);
          ::waitpid(pid_, nullptr, 0);
        }
      }
    }
    if (out_ >= 0) ::close(out_);
    pid_ = -1;
    out_ = -1;
  }

 private:
  pid_t pid_ = -1;
  int out_ = -1;
};

}  // namespace dtx_examples
