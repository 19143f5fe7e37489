#include "completions.hpp"

#include "common.hpp"

#include <fmt/core.h>
#include <string_view>
#include <vector>

namespace conncheck::cli {
namespace {

// What an option's value is, from its type name: PID, FILE/PATH, DIR, a choice written as
// "a|b" or CLI11's IsMember "{a,b}", or anything else (not completed).
// A process name (--name) is completed from the comm of the running processes.
enum class Value { none, any, pid, process_name, file, directory, choice };

struct OptionSpec {
    std::vector<std::string> names; // "--pid", "-p"
    std::string description;
    Value value = Value::none;
    std::vector<std::string> choices;
};

struct CommandSpec {
    std::string name; // empty for conncheck itself
    std::string description;
    std::vector<OptionSpec> options;
    std::vector<OptionSpec> positionals; // in order; names hold the value's name ("shell")
};

std::vector<std::string> split(std::string_view text, char separator) {
    std::vector<std::string> parts;
    std::size_t start = 0;
    while (start <= text.size()) {
        const std::size_t end = std::min(text.find(separator, start), text.size());
        if (end > start) parts.emplace_back(text.substr(start, end - start));
        start = end + 1;
    }
    return parts;
}

// Completion menus show one line: the first sentence, and when that is long, up to its first
// parenthesis or semicolon (zsh and fish fit what is left to the terminal themselves). Only a
// boundary outside parentheses is a cut, so "(e.g. /run/x.pid)" or "(default: 10)" never ends a
// description half open.
std::string summary(const std::string& description) {
    constexpr std::size_t long_line = 100;
    constexpr std::size_t least = 20;
    std::string line = description.substr(0, description.find('\n'));
    int depth = 0;
    std::size_t clause = std::string::npos;
    for (std::size_t i = 0; i + 1 < line.size(); ++i) {
        if (line[i] == '(') ++depth;
        if (line[i] == ')' && depth > 0) --depth;
        if (depth != 0) continue;
        const std::string_view at = std::string_view(line).substr(i, 2);
        // "..." and "e.g." end no sentence.
        const bool abbreviation = (i >= 1 && line[i - 1] == '.') || (i >= 2 && line[i - 2] == '.');
        if (at == ". " && !abbreviation) {
            line.resize(i);
            break;
        }
        if (clause == std::string::npos && i >= least && (at == " (" || at == "; ")) clause = i;
    }
    if (line.size() > long_line && clause != std::string::npos && clause < line.size())
        line.resize(clause);
    return line;
}

void classify(OptionSpec& spec, const std::string& type_name) {
    const std::size_t open = type_name.find('{');
    if (open != std::string::npos && type_name.back() == '}') {
        spec.value = Value::choice;
        spec.choices =
            split(std::string_view(type_name).substr(open + 1, type_name.size() - open - 2), ',');
        return;
    }
    const std::string base = type_name.substr(0, type_name.find(':'));
    if (base.find('|') != std::string::npos) {
        spec.value = Value::choice;
        spec.choices = split(base, '|');
    } else if (base == "PID") {
        spec.value = Value::pid;
    } else if (base == "NAME" && spec.names.front() == "--name") {
        spec.value = Value::process_name;
    } else if (base == "FILE" || base == "PATH") {
        spec.value = Value::file;
    } else if (base == "DIR") {
        spec.value = Value::directory;
    } else {
        spec.value = Value::any;
    }
}

CommandSpec describe(const CLI::App& app, std::string name) {
    CommandSpec command{std::move(name), summary(app.get_description()), {}, {}};
    for (const CLI::Option* option : app.get_options()) {
        if (!option->nonpositional()) {
            OptionSpec spec;
            spec.names.push_back(option->get_name());
            spec.description = summary(option->get_description());
            classify(spec, option->get_type_name());
            command.positionals.push_back(std::move(spec));
            continue;
        }
        if (option->get_group().empty()) continue;
        OptionSpec spec;
        for (const auto& n : option->get_lnames())
            spec.names.push_back("--" + n);
        for (const auto& n : option->get_snames())
            spec.names.push_back("-" + n);
        spec.description = summary(option->get_description());
        if (option->get_items_expected_max() > 0) classify(spec, option->get_type_name());
        command.options.push_back(std::move(spec));
    }
    return command;
}

std::vector<CommandSpec> describe_all(const CLI::App& root) {
    std::vector<CommandSpec> commands{describe(root, "")};
    for (const CLI::App* sub :
         root.get_subcommands([](const CLI::App* s) { return !s->get_group().empty(); }))
        commands.push_back(describe(*sub, sub->get_name()));
    return commands;
}

std::string join(const std::vector<std::string>& words, std::string_view separator) {
    std::string out;
    for (const auto& w : words) {
        if (!out.empty()) out += separator;
        out += w;
    }
    return out;
}

// Inside single quotes: ' becomes '\'' (bash, zsh) or \' (fish).
std::string quoted(const std::string& text, bool fish = false) {
    std::string out = "'";
    for (char c : text) {
        if (c == '\'')
            out += fish ? "\\'" : "'\\''";
        else if (fish && c == '\\')
            out += "\\\\";
        else
            out += c;
    }
    return out + "'";
}

std::string bash(const std::vector<CommandSpec>& commands) {
    std::vector<std::string> subcommands;
    for (std::size_t i = 1; i < commands.size(); ++i)
        subcommands.push_back(commands[i].name);
    std::string out = fmt::format(
        "# bash completion for conncheck{0:>50}\n"
        "# Generated by `conncheck completions bash` from conncheck's own command line.\n\n"
        "# The comm of every running process that --name can select (no '/', no blank).\n"
        "_conncheck_process_names() {{\n"
        "    cat /proc/[0-9]*/comm 2>/dev/null | LC_ALL=C sort -u | grep -v '[/[:space:]]'\n"
        "}}\n\n"
        "_conncheck() {{\n"
        "    local cur prev words cword split\n"
        "    _init_completion -s || return\n\n"
        "    local i sub=\n"
        "    for ((i = 1; i < cword; i++)); do\n"
        "        case ${{words[i]}} in\n"
        "        {1}) sub=${{words[i]}}; break ;;\n"
        "        esac\n"
        "    done\n\n"
        "    local opts\n"
        "    case $sub in\n",
        "-*- shell-script -*-", join(subcommands, " | "));
    for (const auto& command : commands) {
        std::vector<std::string> names;
        for (const auto& o : command.options)
            for (const auto& n : o.names)
                names.push_back(n);
        out += fmt::format("    {})\n        opts={}\n        case $prev in\n",
                           command.name.empty() ? "\"\"" : command.name, quoted(join(names, " ")));
        for (const auto& o : command.options) {
            if (o.value == Value::none) continue;
            std::string action;
            switch (o.value) {
            case Value::pid:
                action = "COMPREPLY=($(compgen -W \"$(cd /proc && printf '%s ' [0-9]*)\" -- "
                         "\"$cur\"))";
                break;
            case Value::process_name:
                action = "COMPREPLY=($(compgen -W \"$(_conncheck_process_names)\" -- \"$cur\"))";
                break;
            case Value::file:
                action = "_filedir";
                break;
            case Value::directory:
                action = "_filedir -d";
                break;
            case Value::choice:
                action = fmt::format("COMPREPLY=($(compgen -W {} -- \"$cur\"))",
                                     quoted(join(o.choices, " ")));
                break;
            default:
                action = ":";
                break;
            }
            out += fmt::format("        {})\n            {}\n            return\n            ;;\n",
                               join(o.names, " | "), action);
        }
        out += "        esac\n        ;;\n";
    }
    out += fmt::format("    esac\n"
                       "    $split && return\n\n"
                       "    if [[ $cur == -* ]]; then\n"
                       "        COMPREPLY=($(compgen -W \"$opts\" -- \"$cur\"))\n"
                       "    elif [[ -z $sub ]]; then\n"
                       "        COMPREPLY=($(compgen -W {} -- \"$cur\"))\n",
                       quoted(join(subcommands, " ")));
    // A subcommand's first positional argument, when it is a choice (completions SHELL).
    std::string positionals;
    for (const auto& command : commands)
        if (!command.name.empty() && !command.positionals.empty() &&
            command.positionals.front().value == Value::choice)
            positionals +=
                fmt::format("        {}) COMPREPLY=($(compgen -W {} -- \"$cur\")) ;;\n",
                            command.name, quoted(join(command.positionals.front().choices, " ")));
    if (!positionals.empty())
        out += "    else\n        case $sub in\n" + positionals + "        esac\n";
    out += "    fi\n"
           "} &&\n"
           "    complete -F _conncheck conncheck\n";
    return out;
}

// zsh's _arguments spec: [ and ] in the description are escaped, the whole spec single-quoted.
std::string zsh_option(const OptionSpec& o, const std::string& name) {
    std::string description;
    for (char c : o.description) {
        if (c == '[' || c == ']' || c == '\\') description += '\\';
        description += c;
    }
    std::string action;
    switch (o.value) {
    case Value::none:
        return quoted(fmt::format("*{}[{}]", name, description));
    case Value::pid:
        action = "_pids";
        break;
    case Value::process_name:
        action = "_conncheck_process_names";
        break;
    case Value::file:
        action = "_files";
        break;
    case Value::directory:
        action = "_files -/";
        break;
    case Value::choice:
        action = "(" + join(o.choices, " ") + ")";
        break;
    case Value::any:
        action = " ";
        break;
    }
    const bool long_name = name.rfind("--", 0) == 0;
    return quoted(
        fmt::format("*{}{}[{}]:value:{}", name, long_name ? "=" : "+", description, action));
}

std::string zsh(const std::vector<CommandSpec>& commands) {
    std::string out = "#compdef conncheck\n"
                      "# Generated by `conncheck completions zsh` from conncheck's own command "
                      "line.\n\n";
    for (const auto& command : commands) {
        const std::string function =
            command.name.empty() ? "_conncheck_options" : "_conncheck_" + command.name;
        std::string name = function;
        for (char& c : name)
            if (c == '-') c = '_';
        out += fmt::format("{}=(\n", name);
        for (const auto& o : command.options)
            for (const auto& n : o.names)
                out += "    " + zsh_option(o, n) + "\n";
        for (std::size_t i = 0; i < command.positionals.size(); ++i) {
            const auto& p = command.positionals[i];
            if (p.value == Value::choice)
                out += "    " +
                       quoted(fmt::format("{}:{}:({})", i + 1, p.names.front(),
                                          join(p.choices, " "))) +
                       "\n";
        }
        out += ")\n";
    }
    out += "\n# The comm of every running process that --name can select (no '/', no blank).\n"
           "_conncheck_process_names() {\n"
           "    local -a names\n"
           "    names=(${(f)\"$(cat /proc/[0-9]*/comm 2>/dev/null)\"})\n"
           "    names=(${(u)${names:#*[/[:space:]]*}})\n"
           "    compadd -a names\n"
           "}\n"
           "\n_conncheck() {\n"
           "    local curcontext=$curcontext state line ret=1\n"
           "    local -a subcommands=(\n";
    for (std::size_t i = 1; i < commands.size(); ++i)
        out += "        " + quoted(commands[i].name + ":" + commands[i].description) + "\n";
    out += "    )\n"
           "    _arguments -C $_conncheck_options ': :->command' '*:: :->argument' && ret=0\n"
           "    case $state in\n"
           "    command) _describe -t commands 'conncheck subcommand' subcommands && ret=0 ;;\n"
           "    argument)\n"
           "        case $line[1] in\n";
    for (std::size_t i = 1; i < commands.size(); ++i) {
        std::string name = "_conncheck_" + commands[i].name;
        for (char& c : name)
            if (c == '-') c = '_';
        out += fmt::format("        {}) _arguments ${} && ret=0 ;;\n", commands[i].name, name);
    }
    out += "        esac\n"
           "        ;;\n"
           "    esac\n"
           "    return ret\n"
           "}\n\n"
           "_conncheck \"$@\"\n";
    return out;
}

std::string fish(const std::vector<CommandSpec>& commands) {
    std::vector<std::string> subcommands;
    for (std::size_t i = 1; i < commands.size(); ++i)
        subcommands.push_back(commands[i].name);
    std::string out = "# Generated by `conncheck completions fish` from conncheck's own command "
                      "line.\n"
                      "complete -c conncheck -f\n";
    for (std::size_t i = 1; i < commands.size(); ++i)
        out += fmt::format("complete -c conncheck -n __fish_use_subcommand -a {} -d {}\n",
                           commands[i].name, quoted(commands[i].description, true));
    for (const auto& command : commands) {
        const std::string condition =
            command.name.empty()
                ? quoted("not __fish_seen_subcommand_from " + join(subcommands, " "), true)
                : quoted("__fish_seen_subcommand_from " + command.name, true);
        for (const auto& o : command.options) {
            std::string line = "complete -c conncheck -n " + condition;
            for (const auto& n : o.names)
                line += (n.rfind("--", 0) == 0 ? " -l " + n.substr(2)
                         : n.size() == 2       ? " -s " + n.substr(1)
                                               : " -o " + n.substr(1));
            switch (o.value) {
            case Value::none:
                break;
            case Value::pid:
                line += " -x -a '(__fish_complete_pids)'";
                break;
            case Value::process_name:
                line += " -x -a '(cat /proc/*/comm 2>/dev/null | string match -rv "
                        "\"[/\\\\s]\" | sort -u)'";
                break;
            case Value::file:
                line += " -r -F";
                break;
            case Value::directory:
                line += " -x -a '(__fish_complete_directories)'";
                break;
            case Value::choice:
                line += " -x -a " + quoted(join(o.choices, " "), true);
                break;
            case Value::any:
                line += " -x";
                break;
            }
            out += line + " -d " + quoted(o.description, true) + "\n";
        }
        if (!command.name.empty() && !command.positionals.empty() &&
            command.positionals.front().value == Value::choice)
            out += fmt::format("complete -c conncheck -n {} -x -a {}\n", condition,
                               quoted(join(command.positionals.front().choices, " "), true));
    }
    return out;
}

} // namespace

void setup_completions(CLI::App& app, CompletionsOptions& options) {
    app.add_option("shell", options.shell, "bash, zsh or fish")
        ->required()
        ->check(CLI::IsMember({"bash", "zsh", "fish"}));
}

int run_completions(const CLI::App& root, const CompletionsOptions& options) {
    const auto commands = describe_all(root);
    const std::string script = options.shell == "bash"  ? bash(commands)
                               : options.shell == "zsh" ? zsh(commands)
                                                        : fish(commands);
    fmt::print("{}", script);
    return exit_code::ok;
}

} // namespace conncheck::cli
