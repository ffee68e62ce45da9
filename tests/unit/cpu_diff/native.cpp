// Native execution of test batches in compatibility mode (SDM vol. 3, 5.8.x
// far CALL to a code segment with L=0; Linux's __USER32_CS is 0x23). The
// 64-bit thunk saves the callee-saved registers and RSP, switches to a stack
// below 4 GiB and far-calls the 32-bit entry stub; that loads DS/ES with the
// user data selector (null DS/ES, normal in 64-bit processes, #GP in
// compatibility mode), then jumps to the first frame. The last frame jumps to
// the exit stub, which restores DS/ES and far-returns to 64-bit code (CS 0x33).
// All code here is hand-encoded; each line's comment names the instruction.
#include "native.h"

#include <asm/ldt.h>
#include <setjmp.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

namespace anykvm::difftest {
namespace {

// Bookkeeping words inside the region (offsets from the base).
constexpr uint32_t SAVED_RSP64 = layout::SLOTS + 0;
constexpr uint32_t FARPTR = layout::SLOTS + 8;  // m16:32 = {offset32, selector16}
constexpr uint32_t SAVED_ESP32 = layout::SLOTS + 16;
constexpr uint32_t SAVED_DS = layout::SLOTS + 20;
constexpr uint32_t SAVED_ES = layout::SLOTS + 24;
constexpr uint32_t START = layout::SLOTS + 28;
constexpr uint32_t SAVED_GS = layout::SLOTS + 32;
constexpr uint16_t USER32_CS = 0x23;  // Linux x86-64 GDT_ENTRY_DEFAULT_USER32_CS * 8 + 3
// Preferred region address: fixed so that failure reports are reproducible.
constexpr uintptr_t PREFERRED_BASE = 0x40000000;
constexpr uint8_t NATIVE_POISON = 0xa5;  // OUT bytes before a run (the engine uses another)

struct Emit {
  std::vector<uint8_t> b;
  void bytes(std::initializer_list<uint8_t> v) { b.insert(b.end(), v); }
  void d32(uint32_t v) {
    for (int i = 0; i < 4; ++i) b.push_back(uint8_t(v >> (8 * i)));
  }
};

std::vector<uint8_t> thunk64(uint32_t base) {
  Emit e;
  e.bytes({0x53, 0x55, 0x41, 0x54, 0x41, 0x55, 0x41, 0x56, 0x41, 0x57});  // push rbx, rbp, r12-r15
  e.bytes({0x48, 0x89, 0x24, 0x25}), e.d32(base + SAVED_RSP64);            // mov [abs], rsp
  e.bytes({0xbc}), e.d32(base + layout::LOW_STACK_TOP);                    // mov esp, imm32 (zero-extends)
  e.bytes({0xff, 0x1c, 0x25}), e.d32(base + FARPTR);                       // call far dword [abs]
  e.bytes({0x48, 0x8b, 0x24, 0x25}), e.d32(base + SAVED_RSP64);            // mov rsp, [abs]
  e.bytes({0x41, 0x5f, 0x41, 0x5e, 0x41, 0x5d, 0x41, 0x5c, 0x5d, 0x5b});  // pop r15-r12, rbp, rbx
  e.bytes({0xc3});                                                         // ret
  return e.b;
}

std::vector<uint8_t> entry32(uint32_t base, bool seg16) {
  Emit e;
  e.bytes({0x36, 0x89, 0x25}), e.d32(base + SAVED_ESP32);  // mov ss:[abs], esp
  e.bytes({0x36, 0x8c, 0x1d}), e.d32(base + SAVED_DS);     // mov ss:[abs], ds
  e.bytes({0x36, 0x8c, 0x05}), e.d32(base + SAVED_ES);     // mov ss:[abs], es
  e.bytes({0x8c, 0xd0});                                   // mov eax, ss (the user data selector)
  e.bytes({0x8e, 0xd8});                                   // mov ds, eax
  e.bytes({0x8e, 0xc0});                                   // mov es, eax
  if (seg16) {
    e.bytes({0xb8}), e.d32(layout::SEL16);  // mov eax, SEL16
    e.bytes({0x8e, 0xe8});                  // mov gs, eax
  }
  e.bytes({0xff, 0x25}), e.d32(base + START);              // jmp [abs]
  return e.b;
}

std::vector<uint8_t> exit32(uint32_t base) {
  Emit e;
  e.bytes({0x8b, 0x25}), e.d32(base + SAVED_ESP32);  // mov esp, [abs]
  e.bytes({0x8e, 0x05}), e.d32(base + SAVED_ES);     // mov es, [abs]
  e.bytes({0x8e, 0x1d}), e.d32(base + SAVED_DS);     // mov ds, [abs]
  e.bytes({0x36, 0x8e, 0x2d}), e.d32(base + SAVED_GS);  // mov gs, ss:[abs] (DS may be null now)
  e.bytes({0xfc});                                   // cld (the C ABI wants DF = 0)
  e.bytes({0xcb});                                   // retf
  return e.b;
}

// Signal state: the test thread only; the handler runs on our altstack.
sigjmp_buf s_jmp;
volatile sig_atomic_t s_armed = 0;
volatile int s_trapno = -1;
volatile uint64_t s_rip = 0;
volatile uint64_t s_err = 0;
uint32_t s_gpr[8];  // the 32-bit registers and EFLAGS at the exception
uint32_t s_eflags;
constexpr int k_signals[] = {SIGFPE, SIGSEGV, SIGILL, SIGBUS, SIGTRAP, SIGALRM};
constexpr int k_timeout = -2;              // s_trapno for the watchdog's SIGALRM
constexpr unsigned k_watchdog_seconds = 30;  // a case looping forever must not hang CI

void on_signal(int sig, siginfo_t*, void* ctx) {
  if (!s_armed) {  // not ours: the default action (a late watchdog alarm: nothing)
    if (sig == SIGALRM) return;
    signal(sig, SIG_DFL);
    raise(sig);
    return;
  }
  auto* uc = static_cast<ucontext_t*>(ctx);
  s_trapno = sig == SIGALRM ? k_timeout : int(uc->uc_mcontext.gregs[REG_TRAPNO]);
  s_rip = uint64_t(uc->uc_mcontext.gregs[REG_RIP]);
  s_err = uint64_t(uc->uc_mcontext.gregs[REG_ERR]);
  static const int k_greg[8] = {REG_RAX, REG_RCX, REG_RDX, REG_RBX, REG_RSP, REG_RBP, REG_RSI, REG_RDI};
  for (int r = 0; r < 8; ++r) s_gpr[r] = uint32_t(uc->uc_mcontext.gregs[k_greg[r]]);
  s_eflags = uint32_t(uc->uc_mcontext.gregs[REG_EFL]);
  s_armed = 0;
  siglongjmp(s_jmp, 1);
}

// Installs our handlers and alternate stack for the lifetime of a run.
struct SignalScope {
  struct sigaction old[std::size(k_signals)];
  stack_t old_stack{};
  std::vector<uint8_t> stack = std::vector<uint8_t>(256 * 1024);
  SignalScope() {
    stack_t st{};
    st.ss_sp = stack.data();
    st.ss_size = stack.size();
    sigaltstack(&st, &old_stack);
    struct sigaction sa {};
    sa.sa_sigaction = on_signal;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    for (size_t i = 0; i < std::size(k_signals); ++i) sigaction(k_signals[i], &sa, &old[i]);
  }
  ~SignalScope() {
    for (size_t i = 0; i < std::size(k_signals); ++i) sigaction(k_signals[i], &old[i], nullptr);
    sigaltstack(&old_stack, nullptr);
  }
};

}  // namespace

NativeRunner& NativeRunner::get() {
  static NativeRunner r;
  return r;
}

NativeRunner::NativeRunner() {
  const int prot = PROT_READ | PROT_WRITE | PROT_EXEC;
  void* p = mmap(reinterpret_cast<void*>(PREFERRED_BASE), layout::SIZE, prot,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
  if (p == MAP_FAILED || reinterpret_cast<uintptr_t>(p) != PREFERRED_BASE) {
    if (p != MAP_FAILED) munmap(p, layout::SIZE);
    p = mmap(nullptr, layout::SIZE, prot, MAP_PRIVATE | MAP_ANONYMOUS | MAP_32BIT, -1, 0);
  }
  if (p == MAP_FAILED) {
    std::perror("cpu_diff: mmap of the RWX region below 4 GiB (differential tests skipped)");
    return;
  }
  m_region = static_cast<uint8_t*>(p);
  m_base = uint32_t(reinterpret_cast<uintptr_t>(p));
  auto put = [&](uint32_t off, const std::vector<uint8_t>& code) { std::memcpy(m_region + off, code.data(), code.size()); };
  put(layout::THUNK64, thunk64(m_base));
  // The SEL16 segment for 16-bit addressing (LDT entry 0, 32-bit data, 4 GiB).
  user_desc d{};
  d.entry_number = layout::SEL16 >> 3;
  d.base_addr = m_base + layout::SEG16_BASE;
  d.limit = 0xfffff;
  d.seg_32bit = 1;
  d.limit_in_pages = 1;
  d.useable = 1;
  m_seg16 = syscall(SYS_modify_ldt, 1, &d, sizeof d) == 0;
  user_desc lim = d;  // entry 1: SEL_LIMITED
  lim.entry_number = layout::SEL_LIMITED >> 3;
  lim.limit = layout::LIMITED_LIMIT;
  lim.limit_in_pages = 0;
  m_seg16 = m_seg16 && syscall(SYS_modify_ldt, 1, &lim, sizeof lim) == 0;
  user_desc down = lim;  // entry 2: SEL_EXPAND_DOWN
  down.entry_number = layout::SEL_EXPAND_DOWN >> 3;
  down.base_addr = m_base + layout::EXPAND_DOWN_BASE;
  down.limit = layout::EXPAND_DOWN_LIMIT;
  down.contents = MODIFY_LDT_CONTENTS_STACK;  // expand-down data
  m_seg16 = m_seg16 && syscall(SYS_modify_ldt, 1, &down, sizeof down) == 0;
  uint16_t gs;  // the 64-bit process's GS, restored after every run
  asm volatile("movw %%gs, %0" : "=r"(gs));
  std::memcpy(m_region + SAVED_GS, &gs, 2);
  if (!m_seg16) std::perror("cpu_diff: modify_ldt (16-bit addressing cases skipped)");
  put(layout::ENTRY32, entry32(m_base, m_seg16));
  put(layout::EXIT, exit32(m_base));
  uint32_t entry = m_base + layout::ENTRY32;
  std::memcpy(m_region + FARPTR, &entry, 4);
  std::memcpy(m_region + FARPTR + 4, &USER32_CS, 2);
}

void NativeRunner::run(const BatchImage& img, std::vector<Outcome>& out, std::vector<uint8_t>& windows) {
  std::memcpy(m_region + layout::CODE, img.code.data(), img.code.size());
  if (!img.windows.empty()) std::memcpy(m_region + layout::MEM, img.windows.data(), img.windows.size());
  std::memset(m_region + layout::OUT, NATIVE_POISON, img.n * layout::OUT_STRIDE);
  out.assign(img.n, Outcome{});
  auto thunk = reinterpret_cast<void (*)()>(m_region + layout::THUNK64);
  {
    SignalScope signals;
    volatile size_t start = 0;
    alarm(k_watchdog_seconds);
    while (start < img.n) {
      uint32_t first = img.frame[start];
      std::memcpy(m_region + START, &first, 4);
      if (sigsetjmp(s_jmp, 1) == 0) {
        s_armed = 1;
        thunk();
        s_armed = 0;
        break;
      }
      // An exception in the 32-bit code: find its case and resume after it.
      int k = img.case_at(uint32_t(s_rip));
      if (k < 0 || uint64_t(s_rip) >> 32) {
        for (size_t i = start; i < img.n; ++i) out[i].note = "native: exception outside the frames";
        std::fprintf(stderr, "cpu_diff: native exception %d at %#llx outside the frames\n", int(s_trapno),
                     (unsigned long long)s_rip);
        break;
      }
      if (s_trapno == k_timeout) {  // the rest of the batch is not run: one timeout per batch at most
        out[size_t(k)].note = "native: watchdog timeout (the case loops forever?)";
        for (size_t i = size_t(k) + 1; i < img.n; ++i) out[i].note = "native: not run after a watchdog timeout";
        std::fprintf(stderr, "cpu_diff: native watchdog timeout at %#llx\n", (unsigned long long)s_rip);
        break;
      }
      out[size_t(k)].fault = s_trapno;
      out[size_t(k)].fault_eip = uint32_t(s_rip);
      out[size_t(k)].fault_error = vector_has_error_code(s_trapno) ? uint32_t(s_err) : 0;
      std::memcpy(out[size_t(k)].gpr.data(), s_gpr, sizeof s_gpr);
      out[size_t(k)].eflags = s_eflags;
      start = size_t(k) + 1;
    }
    alarm(0);
  }
  // A fault left the 32-bit code without the exit stub: restore GS (64-bit
  // code does not use it, but leave the process as we found it).
  uint16_t gs;
  std::memcpy(&gs, m_region + SAVED_GS, 2);
  asm volatile("movw %0, %%gs" : : "r"(gs));
  for (size_t i = 0; i < img.n; ++i) {
    if (out[i].fault >= 0) continue;
    const uint8_t* o = m_region + layout::OUT + i * layout::OUT_STRIDE;
    std::memcpy(out[i].gpr.data(), o, 32);
    std::memcpy(&out[i].eflags, o + 32, 4);
  }
  windows.assign(m_region + layout::MEM, m_region + layout::MEM + img.windows.size());
}

}  // namespace anykvm::difftest
