// The native runner (hand-written AT&T assembly, System V: rdi = Ctx*, rsi =
// code ending in RET) and the shared operand pools of the SIMD tests.
#include "simd_harness.h"

#include <setjmp.h>
#include <signal.h>
#include <ucontext.h>

#include <cinttypes>
#include <cstdio>
#include <cstdlib>

#include "cpu/soft/fpu/simd.h"

asm(R"(
  .text
  .globl simd_native_exec
  .type simd_native_exec, @function
simd_native_exec:
  push %rbx
  push %rbp
  push %r12
  push %r13
  push %r14
  push %r15
  mov %rdi, %r15
  mov %rsi, %r14
  stmxcsr 272(%r15)
  movdqu 0(%r15), %xmm0
  movdqu 16(%r15), %xmm1
  movdqu 32(%r15), %xmm2
  movdqu 48(%r15), %xmm3
  movdqu 64(%r15), %xmm4
  movdqu 80(%r15), %xmm5
  movdqu 96(%r15), %xmm6
  movdqu 112(%r15), %xmm7
  movq 128(%r15), %mm0
  movq 136(%r15), %mm1
  movq 144(%r15), %mm2
  movq 152(%r15), %mm3
  movq 160(%r15), %mm4
  movq 168(%r15), %mm5
  movq 176(%r15), %mm6
  movq 184(%r15), %mm7
  ldmxcsr 256(%r15)
  mov 192(%r15), %rax
  mov 200(%r15), %rcx
  mov 208(%r15), %rdx
  mov 216(%r15), %rbx
  mov 240(%r15), %rsi
  mov 248(%r15), %rdi
  pushq 264(%r15)
  popfq
  call *%r14
  pushfq
  popq 264(%r15)
  mov %rax, 192(%r15)
  mov %rcx, 200(%r15)
  mov %rdx, 208(%r15)
  mov %rbx, 216(%r15)
  mov %rsi, 240(%r15)
  mov %rdi, 248(%r15)
  stmxcsr 256(%r15)
  movdqu %xmm0, 0(%r15)
  movdqu %xmm1, 16(%r15)
  movdqu %xmm2, 32(%r15)
  movdqu %xmm3, 48(%r15)
  movdqu %xmm4, 64(%r15)
  movdqu %xmm5, 80(%r15)
  movdqu %xmm6, 96(%r15)
  movdqu %xmm7, 112(%r15)
  movq %mm0, 128(%r15)
  movq %mm1, 136(%r15)
  movq %mm2, 144(%r15)
  movq %mm3, 152(%r15)
  movq %mm4, 160(%r15)
  movq %mm5, 168(%r15)
  movq %mm6, 176(%r15)
  movq %mm7, 184(%r15)
  emms
  ldmxcsr 272(%r15)
  cld
  pop %r15
  pop %r14
  pop %r13
  pop %r12
  pop %rbp
  pop %rbx
  ret
  .size simd_native_exec, .-simd_native_exec
)");

namespace anykvm::simdtest {

namespace {
sigjmp_buf s_jmp;
Ctx* volatile s_trap_ctx = nullptr;

void on_sigfpe(int, siginfo_t*, void* p) {
  auto* uc = static_cast<ucontext_t*>(p);
  Ctx* c = s_trap_ctx;
  if (!c) return;  // not ours (cannot happen: installed only around a run)
  const auto* fp = uc->uc_mcontext.fpregs;
  for (int k = 0; k < 8; ++k) {
    std::memcpy(c->xmm[k], fp->_xmm[k].element, 16);
    std::memcpy(&c->mm[k], fp->_st[k].significand, 8);
  }
  c->mxcsr = fp->mxcsr;
  const greg_t* gr = uc->uc_mcontext.gregs;
  c->gpr[0] = uint64_t(gr[REG_RAX]);
  c->gpr[1] = uint64_t(gr[REG_RCX]);
  c->gpr[2] = uint64_t(gr[REG_RDX]);
  c->gpr[3] = uint64_t(gr[REG_RBX]);
  c->gpr[6] = uint64_t(gr[REG_RSI]);
  c->gpr[7] = uint64_t(gr[REG_RDI]);
  c->rflags = uint64_t(gr[REG_EFL]);
  siglongjmp(s_jmp, 1);
}
}  // namespace

int native_exec_trapping(Ctx& ctx, const void* code) {
  // Our handler only around the run: other tests in this binary keep theirs.
  struct sigaction sa {}, old {};
  sa.sa_sigaction = on_sigfpe;
  sa.sa_flags = SA_SIGINFO | SA_NODEFER;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGFPE, &sa, &old);
  s_trap_ctx = &ctx;
  int vec = -1;
  if (sigsetjmp(s_jmp, 1) == 0) {
    simd_native_exec(&ctx, code);
  } else {
    vec = 19;
    uint32_t host = uint32_t(ctx.scratch[0]);  // saved by the prologue; the handler's
    asm volatile("ldmxcsr %0" : : "m"(host));   // state would stay after the longjmp
    asm volatile("emms");
  }
  s_trap_ctx = nullptr;
  sigaction(SIGFPE, &old, nullptr);
  return vec;
}

Harness& harness() {
  static Harness* h = new Harness;
  return *h;
}

std::string hex(const std::vector<uint8_t>& code) {
  std::string s;
  char b[4];
  for (uint8_t x : code) {
    std::snprintf(b, sizeof b, "%02x ", x);
    s += b;
  }
  return s;
}

std::string dump(const Ctx& c, bool mmx) {
  std::string s;
  char b[128];
  for (int k = 0; k < 8; ++k) {
    std::snprintf(b, sizeof b, "xmm%d=%016" PRIx64 "_%016" PRIx64 "%s", k, c.xmm[k][1], c.xmm[k][0],
                  k % 2 ? "\n" : "  ");
    s += b;
  }
  if (mmx) {
    for (int k = 0; k < 8; ++k) {
      std::snprintf(b, sizeof b, "mm%d=%016" PRIx64 "%s", k, c.mm[k], k % 4 == 3 ? "\n" : " ");
      s += b;
    }
  }
  for (int k = 0; k < 8; ++k) {
    std::snprintf(b, sizeof b, "r%d=%08x ", k, unsigned(c.gpr[k]));
    s += b;
  }
  std::snprintf(b, sizeof b, "\nmxcsr=%04x flags=%03x\n", c.mxcsr, unsigned(c.rflags));
  s += b;
  return s;
}

uint32_t pick_f32(std::mt19937_64& g) {
  static const uint32_t pool[] = {
      0x00000000, 0x80000000, 0x00000001, 0x80000001, 0x007fffff, 0x807fffff, 0x00800000, 0x80800000,
      0x3f800000, 0xbf800000, 0x3fc00000, 0xc0200000, 0x7f7fffff, 0xff7fffff, 0x7f800000, 0xff800000,
      0x7fc00000, 0xffc00000, 0x7fc12345, 0x7f800001, 0xff812345, 0x3f000000, 0x40200000, 0x4effffff,
      0x4f000000, 0xcf000000, 0xcf000001, 0x1f800000, 0x20000000, 0x00400000, 0x3eaaaaab, 0x40490fdb,
      0x5f000000, 0x3effffff, 0x00c00000, 0x7f000000, 0x0d800000, 0x33800000};
  switch (g() % 4) {
    case 0: return uint32_t(g());  // any bit pattern
    default: return pool[g() % (sizeof pool / sizeof pool[0])];
  }
}

uint64_t pick_f64(std::mt19937_64& g) {
  static const uint64_t pool[] = {
      0, 0x8000000000000000ull, 1, 0x8000000000000001ull, 0x000fffffffffffffull, 0x0010000000000000ull,
      0x8010000000000000ull, 0x3ff0000000000000ull, 0xbff0000000000000ull, 0x3ff8000000000000ull,
      0x7fefffffffffffffull, 0xffefffffffffffffull, 0x7ff0000000000000ull, 0xfff0000000000000ull,
      0x7ff8000000000000ull, 0xfff8000000000000ull, 0x7ff0000000000001ull, 0xfff4000000012345ull,
      0x3fe0000000000000ull, 0x4004000000000000ull, 0x41dfffffffc00000ull, 0x41e0000000000000ull,
      0xc1e0000000000000ull, 0xc1e0000000200000ull, 0x41dfffffffffffffull, 0x3810000000000000ull,
      0x3800000000000000ull, 0x36a0000000000000ull, 0x47efffffe0000000ull, 0x47f0000000000000ull,
      0x3fd5555555555555ull, 0x400921fb54442d18ull, 0x0008000000000000ull, 0x3e70000000000000ull};
  switch (g() % 4) {
    case 0: return g();
    default: return pool[g() % (sizeof pool / sizeof pool[0])];
  }
}

uint64_t pick_int_q(std::mt19937_64& g) {
  static const uint16_t words[] = {0, 1, 0x7f, 0x80, 0xff, 0x7fff, 0x8000, 0xffff, 0x0100, 0xff7f, 0x8080, 0x7ffe};
  uint64_t v = 0;
  switch (g() % 3) {
    case 0: return g();
    case 1:
      for (int k = 0; k < 4; ++k) v |= uint64_t(words[g() % 12]) << (16 * k);
      return v;
    default:
      for (int k = 0; k < 8; ++k) v |= uint64_t(uint8_t(words[g() % 12] >> (8 * (g() & 1)))) << (8 * k);
      return v;
  }
}

uint32_t pick_mxcsr(std::mt19937_64& g) {
  static const uint32_t modes[] = {0x1f80, 0x3f80, 0x5f80, 0x7f80, 0x1fc0, 0x9f80, 0x9fc0, 0xffc0};
  return modes[g() % 8] | uint32_t(g() % 4 == 0 ? g() & 0x3f : 0);
}

::testing::AssertionResult same(const std::vector<uint8_t>& code, const Ctx& in, bool mmx, bool flags) {
  Harness& h = harness();
  Result n = h.native(code, in);
  Result e = h.engine(code, in);
  bool ok = e.vector == n.vector;
  for (int k = 0; k < 8 && ok; ++k) {
    ok = n.ctx.xmm[k][0] == e.ctx.xmm[k][0] && n.ctx.xmm[k][1] == e.ctx.xmm[k][1];
    if (mmx) ok = ok && n.ctx.mm[k] == e.ctx.mm[k];
    if (k != 4 && k != 5) ok = ok && uint32_t(n.ctx.gpr[k]) == uint32_t(e.ctx.gpr[k]);
  }
  ok = ok && n.ctx.mxcsr == e.ctx.mxcsr && std::memcmp(n.ctx.mem, e.ctx.mem, sizeof n.ctx.mem) == 0;
  if (flags) ok = ok && n.ctx.rflags == e.ctx.rflags;
  if (ok) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "code " << hex(code) << " vectors native " << n.vector << " engine " << e.vector << "\ninput:\n"
                                       << dump(in, mmx) << "native:\n"
                                       << dump(n.ctx, mmx) << "engine:\n"
                                       << dump(e.ctx, mmx);
}

void fill(Ctx& c, Lane lane, std::mt19937_64& g) {
  std::memset(&c, 0, sizeof c);
  auto fill16 = [&](uint64_t* q) {
    for (int k = 0; k < 2; ++k) {
      switch (lane) {
        case Lane::F32: q[k] = pick_f32(g) | uint64_t(pick_f32(g)) << 32; break;
        case Lane::F64: q[k] = pick_f64(g); break;
        case Lane::I32: q[k] = pick_int_q(g); break;
      }
    }
  };
  for (int k = 0; k < 8; ++k) fill16(c.xmm[k]);
  uint64_t m[2];
  for (int k = 0; k < 4; ++k) {
    fill16(m);
    std::memcpy(c.mem + 16 * k, m, 16);
  }
  for (int k = 0; k < 8; ++k) c.mm[k] = pick_int_q(g);
  static const uint32_t ints[] = {0, 1, 0xffffffff, 0x7fffffff, 0x80000000, 0x01000001, 0x00ffffff, 0xfffffffd};
  for (int k = 0; k < 8; ++k) c.gpr[k] = g() % 2 ? ints[g() % 8] : uint32_t(g());
  c.gpr[7] = k_mem;
  c.mxcsr = pick_mxcsr(g);
  c.rflags = g() & k_status;
}

void run_forms(const char* name, const std::vector<Form>& forms, bool mmx, bool flags, int cases) {
  Harness& h = harness();
  if (!h.native_ok()) GTEST_SKIP() << "no executable mapping";
  // ANYKVM_SIMD_SEED varies the operands (the default is fixed, reports are reproducible).
  const char* env = std::getenv("ANYKVM_SIMD_SEED");
  uint64_t seed = env ? std::strtoull(env, nullptr, 0) : 0x5eed;
  std::mt19937_64 g(seed ^ std::hash<std::string>{}(name));
  int failures = 0;
  for (const Form& f : forms) {
    for (int n = 0; n < cases && failures < 5; ++n) {
      Ctx in;
      fill(in, f.lane, g);
      if (f.small_count) {
        uint64_t cnt = g() % 71;
        in.mm[1] = in.xmm[1][0] = cnt;
        std::memcpy(in.mem, &cnt, 8);
      }
      if (f.unmask) in.mxcsr &= ~(uint32_t(g()) & 0x1f80);
      std::vector<uint8_t> code = f.op;
      bool mem = f.modrm == Modrm::MemOnly || (f.modrm == Modrm::Both && n % 3 == 2);
      // ModRM: [edi] or register 1, or (for non-group rows) random registers out
      // of those that are safe as GPRs too (not ESP, EBP or the EDI pointer).
      static const uint8_t safe[] = {0, 1, 2, 3, 6};
      uint8_t reg = f.reg, rm = 1;
      if (!f.small_count && f.reg == 0 && n % 2) {
        reg = safe[g() % 5];
        rm = safe[g() % 5];
      }
      code.push_back(uint8_t((mem ? 0x07 : 0xc0 | rm) | (reg << 3)));
      if (f.imm == Imm::Pred) code.push_back(uint8_t(n % 8 + (n % 5 == 0 ? 0x18 : 0)));  // reserved bits ignored
      if (f.imm == Imm::Byte) code.push_back(uint8_t(n % 4 == 0 ? g() % 40 : g()));
      auto r = same(code, in, mmx, flags);
      if (!r) ++failures;
      EXPECT_TRUE(r) << name;
    }
  }
}

}  // namespace anykvm::simdtest
