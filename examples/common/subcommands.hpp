#pragma once
// A program of subcommands (`tool <command> [options]`): the table of
// commands and the main() that dispatches to one. Each command parses its own
// options with cxxopts, which sees "tool <command>" as the program name.
#include <cstdio>
#include <span>
#include <string>
#include <vector>

#include "cli.hpp"

namespace examples {

struct Command {
  const char* name;
  int (*run)(int argc, char** argv);
};

// `usage` when asked (--help, -h: exit 0) or when no command is given (exit
// 2); an unknown command is reported with the usage (exit 2); errors inside a
// command are one line on stderr (run_main).
inline int run_subcommands(const char* tool, const char* usage, std::span<const Command> commands, int argc,
                           char** argv) {
  if (argc < 2 || std::string(argv[1]) == "--help" || std::string(argv[1]) == "-h") {
    std::fputs(usage, argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  const std::string command = argv[1];
  const std::string program = std::string(tool) + " " + command;
  std::vector<char*> args{const_cast<char*>(program.c_str())};
  for (int i = 2; i < argc; ++i) args.push_back(argv[i]);
  const int n = static_cast<int>(args.size());
  return run_main(program.c_str(), [&] {
    for (const auto& c : commands)
      if (command == c.name) return c.run(n, args.data());
    std::fprintf(stderr, "%s: unknown command '%s'\n\n%s", tool, command.c_str(), usage);
    return 2;
  });
}

}  // namespace examples
