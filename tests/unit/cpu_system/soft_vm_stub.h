// Stand-in for cpu-core's SoftVm (src/cpu/soft/soft_vm.h) while it does not
// exist: exactly the members the system area uses (memory, is_code_page,
// on_code_write), plus records the tests inspect. Not used once the real
// header is present (harness.h picks it with __has_include).
#pragma once
#include <cstdint>
#include <set>

#include "cpu/memory.h"

#define ANYKVM_SOFT_VM_STUB 1

namespace anykvm::soft {
class SoftVm {
 public:
  explicit SoftVm(cpu::MemoryMapSource& m) : memory(m) {}
  cpu::MemoryMapSource& memory;
  std::set<uint64_t> code_pages, code_writes;
  bool is_code_page(uint64_t pfn) const { return code_pages.count(pfn) != 0; }
  void on_code_write(uint64_t pfn) { code_writes.insert(pfn); }
};
}  // namespace anykvm::soft
