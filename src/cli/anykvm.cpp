// The `anykvm` command: argv -> actions, no logic of its own.
//   anykvm exec -- CMD ARGS...   run CMD with /dev/kvm served by anykvm (LD_PRELOAD)
//   anykvm info                  version, API version, capabilities, supported CPUID
//   anykvm ioctl-doc             the ioctl coverage table (docs/ioctl-coverage.md)
#include <limits.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "cpu/backend.h"
#include "kvmapi/kvmapi.h"

#ifndef ANYKVM_VERSION
#define ANYKVM_VERSION "0.0.0"
#endif

namespace {

const char* k_usage =
    "usage: anykvm <command> [args]\n"
    "\n"
    "commands:\n"
    "  exec -- CMD [ARGS...]  run CMD with /dev/kvm served by anykvm (through LD_PRELOAD;\n"
    "                         works for shell-script wrappers too, e.g. qemu-system-i386)\n"
    "  info                   print the version, KVM API version, reported capabilities\n"
    "                         and the CPUID the engine supports\n"
    "  ioctl-doc              print the table of served ioctls (markdown)\n"
    "  --help, help           this text\n";

std::string self_dir() {
  char buf[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", buf, sizeof(buf) - 1);
  if (n <= 0) return ".";
  buf[n] = 0;
  std::string s(buf);
  return s.substr(0, s.rfind('/'));
}

std::string find_preload() {
  const std::string dir = self_dir();
  for (const std::string& c : {dir + "/../interpose/libanykvm-preload.so", dir + "/libanykvm-preload.so",
                               dir + "/../lib/anykvm/libanykvm-preload.so", dir + "/../lib/libanykvm-preload.so"}) {
    char real[PATH_MAX];
    if (access(c.c_str(), R_OK) == 0 && realpath(c.c_str(), real)) return real;
  }
  return {};
}

int cmd_exec(int argc, char** argv) {
  int i = 0;
  if (i < argc && (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h"))) {
    std::printf(
        "usage: anykvm exec [--] CMD [ARGS...]\n\n"
        "Runs CMD with LD_PRELOAD=libanykvm-preload.so (kept ahead of any existing\n"
        "LD_PRELOAD entries), so every /dev/kvm the program (and programs it execs) opens\n"
        "is served by anykvm. Exit status: CMD's.\n");
    return 0;
  }
  if (i < argc && !strcmp(argv[i], "--")) ++i;
  if (i >= argc) {
    std::fprintf(stderr, "anykvm exec: no command given\n%s", k_usage);
    return 2;
  }
  std::string lib = find_preload();
  if (lib.empty()) {
    std::fprintf(stderr, "anykvm exec: libanykvm-preload.so not found next to %s\n", self_dir().c_str());
    return 127;
  }
  std::string pre = lib;
  if (const char* old = getenv("LD_PRELOAD"); old && *old) pre += std::string(":") + old;
  setenv("LD_PRELOAD", pre.c_str(), 1);
  execvp(argv[i], argv + i);
  std::fprintf(stderr, "anykvm exec: %s: %s\n", argv[i], strerror(errno));
  return 127;
}

// CPUID feature names for the leaves `info` decodes (SDM vol. 2, CPUID).
const char* const k_leaf1_edx[32] = {"fpu", "vme", "de", "pse", "tsc", "msr", "pae", "mce", "cx8", "apic", nullptr,
                                     "sep", "mtrr", "pge", "mca", "cmov", "pat", "pse36", "psn", "clflush", nullptr,
                                     "ds", "acpi", "mmx", "fxsr", "sse", "sse2", "ss", "htt", "tm", "ia64", "pbe"};
const char* const k_leaf1_ecx[32] = {"sse3", "pclmulqdq", "dtes64", "monitor", "ds-cpl", "vmx", "smx", "est",
                                     "tm2", "ssse3", "cnxt-id", "sdbg", "fma", "cx16", "xtpr", "pdcm", nullptr,
                                     "pcid", "dca", "sse4.1", "sse4.2", "x2apic", "movbe", "popcnt", "tsc-deadline",
                                     "aes", "xsave", "osxsave", "avx", "f16c", "rdrand", "hypervisor"};
const char* const k_ext1_edx[32] = {nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr,
                                    nullptr, nullptr, nullptr, "syscall", nullptr, nullptr, nullptr, nullptr,
                                    nullptr, nullptr, nullptr, nullptr, "nx", nullptr, "mmxext", nullptr,
                                    nullptr, nullptr, "pdpe1gb", "rdtscp", nullptr, "lm", "3dnowext", "3dnow"};

std::string names(uint32_t bits, const char* const table[32]) {
  std::string s;
  for (int b = 0; b < 32; ++b)
    if (bits & (1u << b)) {
      if (!s.empty()) s += ' ';
      s += table[b] ? table[b] : ("bit" + std::to_string(b));
    }
  return s;
}

int cmd_info(int argc, char** argv) {
  if (argc > 0 && (!strcmp(argv[0], "--help") || !strcmp(argv[0], "-h"))) {
    std::printf("usage: anykvm info\n\nPrints the anykvm version, the KVM API version, every capability\n"
                "KVM_CHECK_EXTENSION reports (name and value) and the supported CPUID\n"
                "(KVM_GET_SUPPORTED_CPUID) with feature names.\n");
    return 0;
  }
  std::printf("anykvm %s\nKVM API version: %d\nengine: software x86 (cpu/soft)\n\n", ANYKVM_VERSION,
              anykvm::kvmapi::k_api_version);
  std::printf("Capabilities reported by KVM_CHECK_EXTENSION (all others: 0)\n");
  std::printf("  %-36s %5s  %s\n", "capability", "value", "what it means here");
  for (const auto& c : anykvm::kvmapi::capabilities())
    std::printf("  %-36s %5ld  %s\n", c.name, c.value, c.why);
  std::printf("\nSupported CPUID (KVM_GET_SUPPORTED_CPUID)\n");
  std::printf("  %-10s %-5s %-10s %-10s %-10s %-10s\n", "leaf", "index", "eax", "ebx", "ecx", "edx");
  auto cpuid = anykvm::cpu::soft_supported_cpuid();
  for (const auto& e : cpuid)
    std::printf("  0x%08x %-5u 0x%08x 0x%08x 0x%08x 0x%08x\n", e.function, e.index, e.eax, e.ebx, e.ecx, e.edx);
  for (const auto& e : cpuid) {
    if (e.function == 0) {
      char vendor[13];
      std::memcpy(vendor, &e.ebx, 4);
      std::memcpy(vendor + 4, &e.edx, 4);
      std::memcpy(vendor + 8, &e.ecx, 4);
      vendor[12] = 0;
      std::printf("\n  vendor: %s, max leaf 0x%x\n", vendor, e.eax);
    }
    if (e.function == 1) {
      std::printf("  leaf 1 edx: %s\n", names(e.edx, k_leaf1_edx).c_str());
      std::printf("  leaf 1 ecx: %s\n", names(e.ecx, k_leaf1_ecx).c_str());
    }
    if (e.function == 0x80000001) std::printf("  0x80000001 edx: %s\n", names(e.edx, k_ext1_edx).c_str());
  }
  return 0;
}

int cmd_ioctl_doc() {
  std::printf("# ioctls served by anykvm\n\n"
              "Generated from `src/kvmapi/ioctls.def` by `anykvm ioctl-doc`; a test fails when this file is stale.\n"
              "Numbers are those a C client computes from <linux/kvm.h> (6.1). Any other request fails\n"
              "as Linux 6.1 fails it: EINVAL on /dev/kvm (EOPNOTSUPP for the old KVM_TRACE_* ones) and\n"
              "on vCPU fds, ENOTTY on VM fds; FIOCLEX, FIONCLEX, FIONBIO and FIOASYNC work on every KVM fd.\n\n"
              "| ioctl | number | fd | argument |\n|---|---|---|---|\n");
  for (const auto& i : anykvm::kvmapi::ioctls())
    std::printf("| %s | 0x%08x | %s | %s |\n", i.name, i.number, anykvm::kvmapi::fd_kind_name(i.kind), i.arg);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
    std::fputs(k_usage, argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  std::string cmd = argv[1];
  if (cmd == "exec") return cmd_exec(argc - 2, argv + 2);
  if (cmd == "info") return cmd_info(argc - 2, argv + 2);
  if (cmd == "ioctl-doc") return cmd_ioctl_doc();
  std::fprintf(stderr, "anykvm: unknown command '%s'\n%s", cmd.c_str(), k_usage);
  return 2;
}
