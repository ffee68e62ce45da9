// libFuzzer target: random guest code in a VM driven through the real KVM ABI
// (kvmapi's entry points, as the interposer calls them; see tests/abi/). The
// input is a small header (initial mode, registers) and then code, copied into
// a RAM slot; a second slot holds a page directory and the stack, a third is
// read-only (writes to it exit as MMIO). Every slot's host mapping sits
// between PROT_NONE guard pages, so a stray engine access next to guest memory
// faults at once (SEGV, reported by libFuzzer/ASan). The vCPU runs for a
// bounded number of exits (IO and MMIO answered with data) and a bounded time
// (a watchdog thread sets kvm_run.immediate_exit).
// Invariants: no crash, no sanitizer report, exits well formed (sizes, MMIO
// addresses outside RAM slots except writes to the read-only one), KVM_RUN
// fails only with EINTR. ANYKVM_FUZZ_VERBOSE=1 prints the exits.
#include <fcntl.h>
#include <linux/kvm.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <thread>

#include "fuzz_check.h"
#include "kvmapi/kvmapi.h"

namespace {

namespace kvmapi = anykvm::kvmapi;

constexpr size_t k_page = 4096;
// Guest-physical layout.
constexpr uint64_t k_sys_gpa = 0x0, k_sys_size = 8 * k_page;      // tables (page 0) + code at 0x1000
constexpr uint64_t k_code = 0x1000;
constexpr uint64_t k_stack_gpa = 0x10000, k_stack_size = 2 * k_page;  // page directory, stack page
constexpr uint64_t k_ro_gpa = 0x20000, k_ro_size = k_page;
constexpr uint64_t k_gdt = 0x0, k_idt = 0x400, k_tss = 0x800;
enum : uint16_t { CODE32 = 0x08, DATA32 = 0x10, CODE16 = 0x18, DATA16 = 0x20, CODE3 = 0x2b, DATA3 = 0x33,
                  TSS = 0x38, STACK16 = 0x48 };
constexpr int k_max_exits = 64;
constexpr auto k_time_budget = std::chrono::milliseconds(5);

// Guest memory with a PROT_NONE guard page on each side.
struct Guarded {
  explicit Guarded(size_t size) : size(size) {
    void* p = mmap(nullptr, size + 2 * k_page, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    FUZZ_CHECK(p != MAP_FAILED, "mmap: %s", strerror(errno));
    base = static_cast<uint8_t*>(p);
    FUZZ_CHECK(mprotect(base + k_page, size, PROT_READ | PROT_WRITE) == 0, "mprotect");
    mem = base + k_page;
  }
  ~Guarded() { munmap(base, size + 2 * k_page); }
  uint8_t* base;
  uint8_t* mem;
  size_t size;
};

uint64_t seg_desc(uint32_t base, uint32_t limit, uint8_t access, uint8_t flags) {
  return (uint64_t(limit) & 0xffff) | (uint64_t(base & 0xffffff) << 16) | (uint64_t(access) << 40) |
         (uint64_t((limit >> 16) & 0xf) << 48) | (uint64_t(flags & 0xf) << 52) | (uint64_t(base >> 24) << 56);
}
uint64_t gate_desc(uint16_t sel, uint32_t off, uint8_t access) {
  return (uint64_t(off) & 0xffff) | (uint64_t(sel) << 16) | (uint64_t(access) << 40) | (uint64_t(off >> 16) << 48);
}
void put64(uint8_t* p, uint64_t v) { std::memcpy(p, &v, 8); }
void put32(uint8_t* p, uint32_t v) { std::memcpy(p, &v, 4); }

kvm_segment seg(uint16_t sel, uint32_t base, uint32_t limit, uint8_t type, uint8_t dpl, bool big) {
  kvm_segment s{};
  s.base = base;
  s.limit = limit;
  s.selector = sel;
  s.type = type;
  s.present = 1;
  s.dpl = dpl;
  s.db = big;
  s.s = 1;
  s.g = big;
  return s;
}

struct Fds {
  int sys = -1, vm = -1, vcpu = -1;
  kvm_run* run = nullptr;
  size_t run_size = 0;
  ~Fds() {
    if (run) munmap(run, run_size);
    for (int fd : {vcpu, vm, sys})
      if (fd >= 0) {
        ::close(fd);
        kvmapi::on_close(fd);
      }
  }
};

// Sets kvm_run.immediate_exit when the time budget is spent.
class Watchdog {
 public:
  explicit Watchdog(kvm_run* run) : m_thread([this, run] {
    std::unique_lock<std::mutex> lk(m_lock);
    if (!m_cv.wait_for(lk, k_time_budget, [this] { return m_done; }))
      __atomic_store_n(&run->immediate_exit, 1, __ATOMIC_RELEASE);
  }) {}
  ~Watchdog() {
    {
      std::lock_guard<std::mutex> g(m_lock);
      m_done = true;
    }
    m_cv.notify_one();
    m_thread.join();
  }

 private:
  std::mutex m_lock;
  std::condition_variable m_cv;
  bool m_done = false;
  std::thread m_thread;
};

bool in_range(uint64_t a, uint64_t start, uint64_t size) { return a >= start && a - start < size; }

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // Header: mode byte, then EAX, ECX, EDX, EBX, EBP, ESI, EDI.
  constexpr size_t k_header = 1 + 7 * 4;
  uint8_t header[k_header] = {};
  std::memcpy(header, data, size < k_header ? size : k_header);
  const uint8_t* code = size > k_header ? data + k_header : data;
  size_t code_size = size > k_header ? size - k_header : 0;
  if (code_size > k_sys_size - k_code) code_size = k_sys_size - k_code;
  const unsigned mode = header[0] & 3;  // 0 real, 1 16-bit PM, 2 32-bit PM, 3 32-bit PM + paging
  const bool user = (header[0] & 4) && mode >= 2;
  const bool tf = header[0] & 8;
  const bool wp = header[0] & 16;
  const unsigned iopl = (header[0] >> 5) & 3;

  Guarded sys(k_sys_size), stack(k_stack_size), ro(k_ro_size);
  std::memcpy(sys.mem + k_code, code, code_size);
  std::memcpy(ro.mem, code, code_size < k_ro_size ? code_size : k_ro_size);
  uint8_t ro_copy[k_ro_size];
  std::memcpy(ro_copy, ro.mem, k_ro_size);
  if (mode == 0) {
    for (unsigned v = 0; v < 256; ++v) put32(sys.mem + 4 * v, uint32_t(k_code));  // IVT: 0000:1000
  } else {
    uint8_t* gdt = sys.mem + k_gdt;
    put64(gdt + CODE32, seg_desc(0, 0xfffff, 0x9b, 0xc));
    put64(gdt + DATA32, seg_desc(0, 0xfffff, 0x93, 0xc));
    put64(gdt + CODE16, seg_desc(0, 0xffff, 0x9b, 0));
    put64(gdt + DATA16, seg_desc(0, 0xffff, 0x93, 0));
    put64(gdt + (CODE3 & ~3), seg_desc(0, 0xfffff, 0xfb, 0xc));
    put64(gdt + (DATA3 & ~3), seg_desc(0, 0xfffff, 0xf3, 0xc));
    put64(gdt + TSS, seg_desc(uint32_t(k_tss), 0x67, 0x8b, 0));
    put64(gdt + 0x40, gate_desc(CODE32, uint32_t(k_code), 0xec));  // call gate, DPL 3
    put64(gdt + STACK16, seg_desc(uint32_t(k_stack_gpa), 0xffff, 0x93, 0));
    for (unsigned v = 0; v < 32; ++v)
      put64(sys.mem + k_idt + 8 * v,
            mode == 1 ? gate_desc(CODE16, uint32_t(k_code), 0xe6) : gate_desc(CODE32, uint32_t(k_code), 0xee));
    put32(sys.mem + k_tss + 4, uint32_t(k_stack_gpa + 0x1800));  // ESP0
    put32(sys.mem + k_tss + 8, DATA32);                           // SS0
    put32(sys.mem + k_tss + 0x64, 0xffff0000u);                   // I/O map base past the limit
    put32(stack.mem, 0x87);  // PDE 0: a 4 MiB identity page, present, writable, user
  }

  Fds f;
  f.sys = kvmapi::open_system(O_RDWR | O_CLOEXEC);
  FUZZ_CHECK(f.sys >= 0, "open_system: %d", f.sys);
  long r = kvmapi::ioctl(f.sys, KVM_CREATE_VM, 0);
  FUZZ_CHECK(r >= 0, "KVM_CREATE_VM: %ld", r);
  f.vm = int(r);
  kvm_userspace_memory_region regions[3] = {
      {0, 0, k_sys_gpa, k_sys_size, reinterpret_cast<uint64_t>(sys.mem)},
      {1, 0, k_stack_gpa, k_stack_size, reinterpret_cast<uint64_t>(stack.mem)},
      {2, KVM_MEM_READONLY, k_ro_gpa, k_ro_size, reinterpret_cast<uint64_t>(ro.mem)},
  };
  for (auto& reg : regions) {
    r = kvmapi::ioctl(f.vm, KVM_SET_USER_MEMORY_REGION, reinterpret_cast<unsigned long>(&reg));
    FUZZ_CHECK(r == 0, "KVM_SET_USER_MEMORY_REGION slot %u: %ld", reg.slot, r);
  }
  r = kvmapi::ioctl(f.vm, KVM_CREATE_VCPU, 0);
  FUZZ_CHECK(r >= 0, "KVM_CREATE_VCPU: %ld", r);
  f.vcpu = int(r);
  r = kvmapi::ioctl(f.sys, KVM_GET_VCPU_MMAP_SIZE, 0);
  FUZZ_CHECK(r >= long(2 * k_page), "KVM_GET_VCPU_MMAP_SIZE: %ld", r);
  f.run_size = size_t(r);
  void* p = mmap(nullptr, f.run_size, PROT_READ | PROT_WRITE, MAP_SHARED, f.vcpu, 0);
  FUZZ_CHECK(p != MAP_FAILED, "mmap vcpu: %s", strerror(errno));
  f.run = static_cast<kvm_run*>(p);

  kvm_sregs s;
  FUZZ_CHECK(kvmapi::ioctl(f.vcpu, KVM_GET_SREGS, reinterpret_cast<unsigned long>(&s)) == 0, "GET_SREGS");
  kvm_regs regs{};
  uint32_t gpr[7];
  std::memcpy(gpr, header + 1, sizeof gpr);
  regs.rax = gpr[0];
  regs.rcx = gpr[1];
  regs.rdx = gpr[2];
  regs.rbx = gpr[3];
  regs.rbp = gpr[4];
  regs.rsi = gpr[5];
  regs.rdi = gpr[6];
  regs.rip = k_code;
  regs.rflags = 2 | (tf ? 0x100 : 0) | (uint64_t(iopl) << 12);
  if (mode == 0) {
    for (kvm_segment* sg : {&s.ds, &s.es, &s.fs, &s.gs}) *sg = seg(0, 0, 0xffff, 3, 0, false);
    s.cs = seg(0, 0, 0xffff, 0xb, 0, false);
    s.ss = seg(uint16_t(k_stack_gpa >> 4), uint32_t(k_stack_gpa), 0xffff, 3, 0, false);
    regs.rsp = 0x2000;
    s.idt.base = 0;
    s.idt.limit = 0x3ff;
  } else {
    s.gdt.base = k_gdt;
    s.gdt.limit = 0x4f;
    s.idt.base = k_idt;
    s.idt.limit = 32 * 8 - 1;
    s.tr = seg(TSS, uint32_t(k_tss), 0x67, 11, 0, false);
    s.tr.s = 0;
    s.cr0 = 0x11 | (wp ? 0x10000 : 0);  // PE, ET
    if (mode == 1) {
      s.cs = seg(CODE16, 0, 0xffff, 0xb, 0, false);
      for (kvm_segment* sg : {&s.ds, &s.es, &s.fs, &s.gs}) *sg = seg(DATA16, 0, 0xffff, 3, 0, false);
      s.ss = seg(STACK16, uint32_t(k_stack_gpa), 0xffff, 3, 0, false);
      regs.rsp = 0x2000;
    } else {
      uint8_t dpl = user ? 3 : 0;
      s.cs = seg(user ? CODE3 : CODE32, 0, 0xffffffff, 0xb, dpl, true);
      for (kvm_segment* sg : {&s.ds, &s.es, &s.fs, &s.gs, &s.ss})
        *sg = seg(user ? DATA3 : DATA32, 0, 0xffffffff, 3, dpl, true);
      regs.rsp = k_stack_gpa + 0x2000;
    }
    if (mode == 3) {
      s.cr4 = 0x10;  // PSE
      s.cr3 = k_stack_gpa;
      s.cr0 |= 0x80000000u;
    }
  }
  FUZZ_CHECK(kvmapi::ioctl(f.vcpu, KVM_SET_SREGS, reinterpret_cast<unsigned long>(&s)) == 0, "SET_SREGS");
  FUZZ_CHECK(kvmapi::ioctl(f.vcpu, KVM_SET_REGS, reinterpret_cast<unsigned long>(&regs)) == 0, "SET_REGS");

  uint8_t fill = header[1] ^ header[2];
  static const bool verbose = std::getenv("ANYKVM_FUZZ_VERBOSE") != nullptr;  // exits to stderr
  {
    Watchdog dog(f.run);
    for (int n = 0; n < k_max_exits; ++n) {
      r = kvmapi::ioctl(f.vcpu, KVM_RUN, 0);
      if (r == -EINTR) break;  // the watchdog
      FUZZ_CHECK(r == 0, "KVM_RUN: %ld", r);
      kvm_run* run = f.run;
      bool stop = false;
      if (verbose) {
        std::fprintf(stderr, "exit %u", run->exit_reason);
        if (run->exit_reason == KVM_EXIT_IO)
          std::fprintf(stderr, " io %s port %#x size %u count %u", run->io.direction ? "out" : "in", run->io.port,
                       run->io.size, run->io.count);
        if (run->exit_reason == KVM_EXIT_MMIO)
          std::fprintf(stderr, " mmio %s %#llx len %u", run->mmio.is_write ? "write" : "read",
                       (unsigned long long)run->mmio.phys_addr, run->mmio.len);
        std::fputc('\n', stderr);
      }
      switch (run->exit_reason) {
        case KVM_EXIT_IO: {
          FUZZ_CHECK(run->io.size == 1 || run->io.size == 2 || run->io.size == 4, "io size %u", run->io.size);
          FUZZ_CHECK(run->io.count >= 1, "io count %u", run->io.count);
          FUZZ_CHECK(run->io.data_offset >= sizeof(kvm_run) &&
                         run->io.data_offset + uint64_t(run->io.size) * run->io.count <= f.run_size,
                     "io data %llu + %u*%u outside the %zu-byte mapping", (unsigned long long)run->io.data_offset,
                     run->io.size, run->io.count, f.run_size);
          uint8_t* d = reinterpret_cast<uint8_t*>(run) + run->io.data_offset;
          if (run->io.direction == KVM_EXIT_IO_IN) std::memset(d, fill++, size_t(run->io.size) * run->io.count);
          break;
        }
        case KVM_EXIT_MMIO: {
          uint64_t a = run->mmio.phys_addr;
          FUZZ_CHECK(run->mmio.len >= 1 && run->mmio.len <= 8, "mmio len %u", run->mmio.len);
          FUZZ_CHECK(!in_range(a, k_sys_gpa, k_sys_size) && !in_range(a, k_stack_gpa, k_stack_size),
                     "MMIO exit at %#llx inside a RAM slot", (unsigned long long)a);
          FUZZ_CHECK(!in_range(a, k_ro_gpa, k_ro_size) || run->mmio.is_write, "MMIO read of the read-only slot %#llx",
                     (unsigned long long)a);
          if (!run->mmio.is_write) std::memset(run->mmio.data, fill++, sizeof run->mmio.data);
          break;
        }
        case KVM_EXIT_HLT:
        case KVM_EXIT_IRQ_WINDOW_OPEN:
          break;
        case KVM_EXIT_SHUTDOWN:
        case KVM_EXIT_INTERNAL_ERROR:
        case KVM_EXIT_FAIL_ENTRY:
        case KVM_EXIT_DEBUG:
          stop = true;
          break;
        default:
          FUZZ_CHECK(false, "unexpected exit reason %u", run->exit_reason);
      }
      if (stop) break;
    }
  }
  FUZZ_CHECK(std::memcmp(ro_copy, ro.mem, k_ro_size) == 0, "the guest changed its read-only slot");
  // The state ioctls still answer after whatever the guest did.
  FUZZ_CHECK(kvmapi::ioctl(f.vcpu, KVM_GET_REGS, reinterpret_cast<unsigned long>(&regs)) == 0, "GET_REGS");
  FUZZ_CHECK(kvmapi::ioctl(f.vcpu, KVM_GET_SREGS, reinterpret_cast<unsigned long>(&s)) == 0, "GET_SREGS");
  return 0;
}
