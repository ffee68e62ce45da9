// The block compiler (cpu/soft/jit) against the interpreter: a compiled block
// must leave the guest exactly as run_block would, including when it stops
// in the middle (an MMIO exit, a fault whose exception frame carries EIP and
// the flags of the instruction before, a store into its own code). Each test
// runs its guest with the compiler off (ANYKVM_JIT=0) and with every block
// compiled on its first run (ANYKVM_JIT_THRESHOLD=0), and checks the second
// run really compiled blocks. Programs were assembled with GNU as --32.
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <utility>
#include <vector>

#include "cpu/soft/jit/jit.h"
#include "harness.h"

namespace anykvm::test {
namespace {

enum class Mode { Interpreter, Compiled };

// Guest construction reads the compiler settings from the environment.
struct JitEnv {
  explicit JitEnv(Mode m) {
    if (m == Mode::Interpreter) {
      setenv("ANYKVM_JIT", "0", 1);
    } else {
      setenv("ANYKVM_JIT", "1", 1);
      setenv("ANYKVM_JIT_THRESHOLD", "0", 1);
    }
  }
  ~JitEnv() {
    unsetenv("ANYKVM_JIT");
    unsetenv("ANYKVM_JIT_THRESHOLD");
  }
};

constexpr uint32_t k_code = 0x1000;
constexpr uint32_t k_data = 0x8000;

void fill_data(Guest& g) {
  uint32_t x = 0x9e3779b9;
  for (uint32_t a = k_data; a < k_data + 0x2000; ++a) {
    x = x * 1103515245u + 12345u;
    g.ram[a] = uint8_t(x >> 16);
  }
}

// Flat 32-bit protected mode with a GDT at 0x500 (null, 0x08 flat code, 0x10
// flat data, then `extra` descriptors from 0x18) and the IDT `idt`.
void flat32_with_gdt(Guest& g, uint32_t eip, const std::vector<uint8_t>& extra, cpu::DescriptorTable idt) {
  std::vector<uint8_t> gdt = {0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 0, 0x9b, 0xcf, 0,
                              0xff, 0xff, 0, 0, 0, 0x93, 0xcf, 0};
  gdt.insert(gdt.end(), extra.begin(), extra.end());
  std::memcpy(&g.ram[0x500], gdt.data(), gdt.size());
  g.flat32(eip);
  cpu::SpecialRegs s = g.vcpu->get_sregs();
  s.gdt = {0x500, uint16_t(gdt.size() - 1)};
  s.idt = idt;
  ASSERT_TRUE(g.vcpu->set_sregs(s));
}

// A loop over memory mixing the compiled forms: loads, stores, read-modify-
// write, ADC/SBB, shifts, IMUL, MOVZX/MOVSX, CMOVcc, SETcc, PUSH/POP, INC m,
// TEST, NEG, 8-bit AH, 16-bit operands, then HLT.
const std::vector<uint8_t> k_mixed = {
    0xbe, 0x00, 0x80, 0x00, 0x00,        // mov esi, 0x8000
    0xb9, 0x2c, 0x01, 0x00, 0x00,        // mov ecx, 300
    0x31, 0xc0,                          // xor eax, eax
    0xbb, 0x78, 0x56, 0x34, 0x12,        // mov ebx, 0x12345678
    0xba, 0x07, 0x00, 0x00, 0x00,        // mov edx, 7
    0x03, 0x06,                          // 1: add eax, [esi]
    0x11, 0xc3,                          // adc ebx, eax
    0x89, 0x5e, 0x04,                    // mov [esi+4], ebx
    0xc1, 0xe3, 0x03,                    // shl ebx, 3
    0x31, 0xcb,                          // xor ebx, ecx
    0xd1, 0xf8,                          // sar eax, 1
    0x0f, 0xaf, 0xd3,                    // imul edx, ebx
    0x0f, 0xb6, 0x7e, 0x05,              // movzx edi, byte [esi+5]
    0x81, 0xef, 0x80, 0x00, 0x00, 0x00,  // sub edi, 0x80
    0x0f, 0x4c, 0xc2,                    // cmovl eax, edx
    0x0f, 0x92, 0x46, 0x08,              // setc [esi+8]
    0x50,                                // push eax
    0xff, 0x46, 0x0c,                    // inc dword [esi+12]
    0x5f,                                // pop edi
    0xf7, 0xc7, 0x00, 0x01, 0x00, 0x00,  // test edi, 0x100
    0xf7, 0xda,                          // neg edx
    0x66, 0x0f, 0xbe, 0x7e, 0x09,        // movsx di, byte [esi+9]
    0x66, 0x19, 0x7e, 0x02,              // sbb [esi+2], di
    0x08, 0xc4,                          // or ah, al
    0x83, 0xc6, 0x04,                    // add esi, 4
    0x49,                                // dec ecx
    0x75, 0xc0,                          // jnz 1b
    0xf4,                                // hlt
};

struct Outcome {
  cpu::Regs regs;
  std::vector<uint8_t> data;
};


// Flags set before several memory accesses and read after them (SETB, ADC,
// SBB): the compiled code keeps them aside across the inline TLB checks.
//   mov esi, 0x8000; mov edi, 200; xor eax, eax; xor ebx, ebx
//   1: cmp eax, ebx; mov ecx, [esi]; mov edx, [esi+4]; mov [esi+8], ecx; setb al
//      adc ebx, edx; add eax, [esi]; mov ecx, [esi+12]; push ecx; pop ecx
//      sbb eax, ecx; mov [esi+16], eax; add esi, 8; dec edi; jnz 1b; hlt
const std::vector<uint8_t> k_flags_across_memory = {
    0xbe, 0x00, 0x80, 0x00, 0x00, 0xbf, 0xc8, 0x00, 0x00, 0x00, 0x31, 0xc0, 0x31, 0xdb, 0x39, 0xd8,
    0x8b, 0x0e, 0x8b, 0x56, 0x04, 0x89, 0x4e, 0x08, 0x0f, 0x92, 0xc0, 0x11, 0xd3, 0x03, 0x06, 0x8b,
    0x4e, 0x0c, 0x51, 0x59, 0x19, 0xc8, 0x89, 0x46, 0x10, 0x83, 0xc6, 0x08, 0x4f, 0x75, 0xdf, 0xf4};

Outcome run_program(Mode m, const std::vector<uint8_t>& code) {
  JitEnv env(m);
  Guest g;
  fill_data(g);
  g.load(k_code, code);
  g.flat32(k_code);
  cpu::VcpuExit e = g.run();
  EXPECT_EQ(e.reason, cpu::ExitReason::Hlt);
  return {g.regs(), std::vector<uint8_t>(g.ram.begin() + k_data, g.ram.begin() + k_data + 0x2000)};
}

// Runs `code` in both modes; the compiled run must compile blocks and end
// with the interpreter's registers, flags and memory. Returns that state.
Outcome expect_same_as_interpreter(const std::vector<uint8_t>& code) {
  const Outcome want = run_program(Mode::Interpreter, code);
  const uint64_t before = soft::jit::blocks_compiled();
  const Outcome got = run_program(Mode::Compiled, code);
  EXPECT_GT(soft::jit::blocks_compiled(), before);
  for (int r = 0; r < 8; ++r) EXPECT_EQ(got.regs.gpr[r], want.regs.gpr[r]) << "gpr " << r;
  EXPECT_EQ(got.regs.rip, want.regs.rip);
  EXPECT_EQ(got.regs.rflags, want.regs.rflags);
  EXPECT_EQ(got.data, want.data);
  return want;
}

TEST(Jit, FlagsLiveAcrossMemoryAccessesMatchTheInterpreter) {
  EXPECT_EQ(expect_same_as_interpreter(k_flags_across_memory).regs.gpr[7], 0u);  // the loop ran to its end
}

TEST(Jit, CompiledLoopLeavesTheSameStateAsTheInterpreter) {
  EXPECT_EQ(expect_same_as_interpreter(k_mixed).regs.gpr[1], 0u);  // the loop ran to its end
}

// An MMIO read in the middle of a compiled block exits with the instruction
// unfinished; the flags of the CMP before it must survive the exit (SETB
// after it reads them).
//   mov ecx, 5; mov ebx, 0x200000; xor esi, esi; xor edi, edi
//   1: cmp ecx, 3; mov eax, [ebx]; setb dl; movzx edx, dl; add esi, edx
//      add edi, eax; dec ecx; jnz 1b; hlt
const std::vector<uint8_t> k_mmio_loop = {0xb9, 0x05, 0x00, 0x00, 0x00, 0xbb, 0x00, 0x00, 0x20, 0x00, 0x31,
                                          0xf6, 0x31, 0xff, 0x83, 0xf9, 0x03, 0x8b, 0x03, 0x0f, 0x92, 0xc2,
                                          0x0f, 0xb6, 0xd2, 0x01, 0xd6, 0x01, 0xc7, 0x49, 0x75, 0xee, 0xf4};

TEST(Jit, MmioReadInsideACompiledBlockKeepsTheFlags) {
  for (Mode m : {Mode::Interpreter, Mode::Compiled}) {
    JitEnv env(m);
    const uint64_t before = soft::jit::blocks_compiled();
    Guest g;
    g.load(k_code, k_mmio_loop);
    g.flat32(k_code);
    uint32_t sum = 0;
    int reads = 0;
    cpu::VcpuExit e;
    for (;;) {
      e = g.run();
      if (e.reason != cpu::ExitReason::Mmio) break;
      ASSERT_EQ(e.mmio.gpa, k_mmio);
      ASSERT_EQ(e.mmio.len, 4u);
      ASSERT_FALSE(e.mmio.is_write);
      const uint32_t v = 0x1000u * uint32_t(++reads) + 7;
      sum += v;
      uint8_t d[4];
      std::memcpy(d, &v, 4);
      g.vcpu->complete_mmio_read(d);
    }
    EXPECT_EQ(e.reason, cpu::ExitReason::Hlt);
    EXPECT_EQ(reads, 5);
    EXPECT_EQ(g.gpr(7), sum);  // EDI: every value read
    EXPECT_EQ(g.gpr(6), 2u);   // ESI: ECX < 3 in two of five iterations
    if (m == Mode::Compiled) {
      EXPECT_GT(soft::jit::blocks_compiled(), before);
    }
  }
}

// A #GP (DS limit) on a load inside a compiled block: the exception frame
// holds the load's EIP and the flags of this pass's CMP (0x9000 - 0x8fff:
// AF only), not those of the TEST before it (ZF PF) nor of the last pass's
// CMP (CF AF SF).
//   mov ebx, 0x8000; xor eax, eax
//   1: test eax, eax; lea ebx, [ebx+0x100]; cmp ebx, 0x8fff; mov eax, [ebx]; jmp 1b
const std::vector<uint8_t> k_limit_loop = {0xbb, 0x00, 0x80, 0x00, 0x00, 0x31, 0xc0, 0x85, 0xc0,
                                           0x8d, 0x9b, 0x00, 0x01, 0x00, 0x00, 0x81, 0xfb, 0xff,
                                           0x8f, 0x00, 0x00, 0x8b, 0x03, 0xeb, 0xee};
constexpr uint32_t k_faulting_load = k_code + 21;

TEST(Jit, FaultInsideACompiledBlockHasThePreciseEipAndFlags) {
  for (Mode m : {Mode::Interpreter, Mode::Compiled}) {
    JitEnv env(m);
    const uint64_t before = soft::jit::blocks_compiled();
    Guest g;
    g.load(k_code, k_limit_loop);
    // IDT at 0x600: vector 13 is a 32-bit interrupt gate to 0x3000 (HLT).
    const uint8_t gate[] = {0x00, 0x30, 0x08, 0x00, 0x00, 0x8e, 0x00, 0x00};
    std::memcpy(&g.ram[0x600 + 13 * 8], gate, sizeof gate);
    g.ram[0x3000] = 0xf4;
    flat32_with_gdt(g, k_code, {}, {0x600, 0xff});
    cpu::SpecialRegs s = g.vcpu->get_sregs();
    s.seg[3].limit = 0x8fff;  // DS: byte-granular limit below the last load
    s.seg[3].g = 0;
    ASSERT_TRUE(g.vcpu->set_sregs(s));
    cpu::VcpuExit e = g.run();
    ASSERT_EQ(e.reason, cpu::ExitReason::Hlt);
    EXPECT_EQ(g.regs().rip, 0x3001u);
    const uint32_t esp = uint32_t(g.gpr(4));
    EXPECT_EQ(g.r32(esp), 0u);                // error code
    EXPECT_EQ(g.r32(esp + 4), k_faulting_load);
    EXPECT_EQ(g.r32(esp + 12) & 0x8d5, 0x10u);  // AF alone, from this pass's CMP
    EXPECT_EQ(g.gpr(3), 0x9000u);
    if (m == Mode::Compiled) {
      EXPECT_GT(soft::jit::blocks_compiled(), before);
    }
  }
}

// A compiled block stores into its own code: the instruction after the store
// must run as rewritten within the same pass.
//   mov ecx, 10; xor edx, edx
//   1: mov [0x100e], cl   (the immediate of the next instruction)
//      mov eax, 0; add edx, eax; dec ecx; jnz 1b; hlt
const std::vector<uint8_t> k_smc_loop = {0xb9, 0x0a, 0x00, 0x00, 0x00, 0x31, 0xd2, 0x88, 0x0d, 0x0e, 0x10, 0x00,
                                         0x00, 0xb8, 0x00, 0x00, 0x00, 0x00, 0x01, 0xc2, 0x49, 0x75, 0xf0, 0xf4};

TEST(Jit, StoreIntoTheRunningBlockTakesEffectAtTheNextInstruction) {
  for (Mode m : {Mode::Interpreter, Mode::Compiled}) {
    JitEnv env(m);
    const uint64_t before = soft::jit::blocks_compiled();
    Guest g;
    g.load(k_code, k_smc_loop);
    g.flat32(k_code);
    EXPECT_EQ(g.run().reason, cpu::ExitReason::Hlt);
    EXPECT_EQ(g.gpr(2), 55u);  // 10 + 9 + ... + 1
    if (m == Mode::Compiled) {
      EXPECT_GT(soft::jit::blocks_compiled(), before);
    }
  }
}


// Compiled code assumes the segments it uses keep a type its inline checks
// cover. When the guest loads DS with an expand-down descriptor after the
// loop was compiled, the loop must go back to the interpreter: offset 0x8000
// is below the expand-down limit 0xffff0fff, so the load raises #GP (no IDT
// here: a triple fault), though the TLB still maps the page.
//   mov ecx, 50
//   1: mov eax, [0x8000]; dec ecx; jnz 1b
//   test esi, esi; jnz 2f; inc esi; mov ax, 0x18; mov ds, ax; mov ecx, 50; jmp 1b
//   2: hlt
const std::vector<uint8_t> k_ds_loop = {0xb9, 0x32, 0x00, 0x00, 0x00, 0x8b, 0x05, 0x00, 0x80, 0x00, 0x00,
                                        0x49, 0x75, 0xf7, 0x85, 0xf6, 0x75, 0x0e, 0x46, 0x66, 0xb8, 0x18,
                                        0x00, 0x8e, 0xd8, 0xb9, 0x32, 0x00, 0x00, 0x00, 0xeb, 0xe5, 0xf4};

TEST(Jit, SegmentTypeChangeSendsACompiledBlockBackToTheInterpreter) {
  for (Mode m : {Mode::Interpreter, Mode::Compiled}) {
    JitEnv env(m);
    const uint64_t before = soft::jit::blocks_compiled();
    Guest g;
    g.load(k_code, k_ds_loop);
    flat32_with_gdt(g, k_code, {0xf0, 0xff, 0, 0, 0, 0x97, 0xcf, 0}, {0, 0});  // 0x18: expand-down, limit 0xffff0fff
    EXPECT_EQ(g.run().reason, cpu::ExitReason::Shutdown);
    EXPECT_EQ(g.gpr(6), 1u);   // ESI: DS was reloaded
    EXPECT_EQ(g.gpr(1), 50u);  // ECX: the first load after it faulted
    if (m == Mode::Compiled) {
      EXPECT_GT(soft::jit::blocks_compiled(), before);
    }
  }
}


// More hot code than the arena holds: the arena is dropped and refilled many
// times in one run, and no block may run code left from before a reset.
//   mov ecx, 20
//   outer: { add eax, k; jmp next } for k = 1..1000   (each a block)
//          dec ecx; jnz outer; hlt
TEST(Jit, ArenaResetDropsEveryBlocksCode) {
  std::vector<uint8_t> p = {0xb9, 0x14, 0x00, 0x00, 0x00};  // mov ecx, 20
  const size_t outer = p.size();
  uint32_t sum = 0;
  for (uint32_t k = 1; k <= 1000; ++k) {
    p.push_back(0x05);  // add eax, imm32
    for (int i = 0; i < 4; ++i) p.push_back(uint8_t((k * 2654435761u) >> (8 * i)));
    sum += k * 2654435761u;
    p.insert(p.end(), {0xe9, 0, 0, 0, 0});  // jmp to the next instruction
  }
  p.push_back(0x49);  // dec ecx
  const int32_t back = int32_t(outer) - int32_t(p.size() + 6);
  p.insert(p.end(), {0x0f, 0x85});  // jnz outer
  for (int i = 0; i < 4; ++i) p.push_back(uint8_t(uint32_t(back) >> (8 * i)));
  p.push_back(0xf4);
  for (Mode m : {Mode::Interpreter, Mode::Compiled}) {
    JitEnv env(m);
    setenv("ANYKVM_JIT_ARENA", "16384", 1);
    const uint64_t compiled = soft::jit::blocks_compiled(), resets = soft::jit::arena_resets();
    Guest g;
    unsetenv("ANYKVM_JIT_ARENA");
    g.load(k_code, p);
    g.flat32(k_code);
    EXPECT_EQ(g.run().reason, cpu::ExitReason::Hlt);
    EXPECT_EQ(uint32_t(g.gpr(0)), uint32_t(20 * sum));
    if (m == Mode::Compiled) {
      EXPECT_GT(soft::jit::blocks_compiled(), compiled + 20000);
      EXPECT_GT(soft::jit::arena_resets(), resets + 100);
    }
  }
}


// A block compiled while DS was flat (base 0, limit 4 GiB) computes linear
// addresses without the base; after the guest loads DS with base 0x1000 the
// same load must read 0x9000, not 0x8000 (whose TLB entry is still valid).
// The program of SegmentTypeChange..., with a based descriptor at 0x18.
TEST(Jit, SegmentBaseChangeSendsAFlatCompiledBlockBackToTheInterpreter) {
  for (Mode m : {Mode::Interpreter, Mode::Compiled}) {
    JitEnv env(m);
    Guest g;
    g.load(k_code, k_ds_loop);
    const uint32_t at_0x8000 = 0x11111111, at_0x9000 = 0x22222222;
    std::memcpy(&g.ram[0x8000], &at_0x8000, 4);
    std::memcpy(&g.ram[0x9000], &at_0x9000, 4);
    flat32_with_gdt(g, k_code, {0xff, 0xff, 0x00, 0x10, 0, 0x93, 0xcf, 0}, {0, 0});  // 0x18: base 0x1000
    EXPECT_EQ(g.run().reason, cpu::ExitReason::Hlt);
    EXPECT_EQ(g.gpr(6), 1u);  // ESI: DS was reloaded
    EXPECT_EQ(uint32_t(g.gpr(0)), at_0x9000);
  }
}


// Kicks the vCPU if KVM_RUN has not returned after 10 s, so a compiled loop
// that went wrong (a register lost, a stale link) fails the test instead of
// hanging it.
struct Watchdog {
  explicit Watchdog(Guest& g)
      : t([this, &g] {
          for (int i = 0; i < 1000 && !done.load(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
          if (!done.load()) g.kick.store(true, std::memory_order_release);
        }) {}
  ~Watchdog() {
    done.store(true);
    t.join();
  }
  std::atomic<bool> done{false};
  std::thread t;
};

// Guest registers live in host registers within a compiled block. A slow
// path (here a load that crosses a page, every time) must find them in
// Cpu::gpr and leave its result where the block reads it next; an exit in
// the middle of a block (an MMIO read) must show them to user space. With
// seven registers live, some are also evicted and reloaded.
//   mov ebx, 0x200000; mov ecx, 3; xor edi, edi
//   1: lea eax, [ecx+1]; lea esi, [ecx+ecx*4]; lea ebp, [esi+7]
//      mov edx, [0x8ffe]; add edx, ecx; add edi, edx
//      mov eax, [ebx]; add edi, eax; dec ecx; jnz 1b; hlt
const std::vector<uint8_t> k_regs_across_slow_paths = {
    0xbb, 0x00, 0x00, 0x20, 0x00, 0xb9, 0x03, 0x00, 0x00, 0x00, 0x31, 0xff, 0x8d, 0x41, 0x01,
    0x8d, 0x34, 0x89, 0x8d, 0x6e, 0x07, 0x8b, 0x15, 0xfe, 0x8f, 0x00, 0x00, 0x01, 0xca, 0x01,
    0xd7, 0x8b, 0x03, 0x01, 0xc7, 0x49, 0x75, 0xe6, 0xf4};

TEST(Jit, RegistersAreInCpuStateAtSlowPathsAndExits) {
  std::vector<cpu::Regs> seen[2];
  for (Mode m : {Mode::Interpreter, Mode::Compiled}) {
    JitEnv env(m);
    const uint64_t before = soft::jit::blocks_compiled();
    Guest g;
    g.load(k_code, k_regs_across_slow_paths);
    g.load(0x8ffe, {0x11, 0x22, 0x33, 0x44});
    g.flat32(k_code);
    Watchdog w(g);
    std::vector<cpu::Regs>& r = seen[m == Mode::Compiled];
    cpu::VcpuExit e;
    for (;;) {
      e = g.run();
      r.push_back(g.regs());
      if (e.reason != cpu::ExitReason::Mmio) break;
      const uint32_t v = 0x100000u * uint32_t(r.size());
      uint8_t d[4];
      std::memcpy(d, &v, 4);
      g.vcpu->complete_mmio_read(d);
    }
    EXPECT_EQ(e.reason, cpu::ExitReason::Hlt);
    ASSERT_EQ(r.size(), 4u);
    if (m == Mode::Compiled) EXPECT_GT(soft::jit::blocks_compiled(), before);
  }
  for (size_t k = 0; k < seen[0].size(); ++k) {
    // At each MMIO exit (ECX = 3, 2, 1): ESI = 5 ECX, EBP = 5 ECX + 7, EDX = [0x8ffe] + ECX.
    if (k < 3) {
      const uint32_t ecx = uint32_t(3 - k);
      EXPECT_EQ(seen[1][k].gpr[1], ecx);
      EXPECT_EQ(seen[1][k].gpr[6], 5 * ecx);
      EXPECT_EQ(seen[1][k].gpr[5], 5 * ecx + 7);
      EXPECT_EQ(seen[1][k].gpr[2], 0x44332211u + ecx);
    }
    for (int n = 0; n < 8; ++n) EXPECT_EQ(seen[1][k].gpr[n], seen[0][k].gpr[n]) << "exit " << k << " gpr " << n;
    EXPECT_EQ(seen[1][k].rip, seen[0][k].rip);
    EXPECT_EQ(seen[1][k].rflags, seen[0][k].rflags);
  }
}

// A block's end keeps a link to the block it went to; the link is followed
// without a TLB lookup until the guest flushes its TLB. Here the CALL's
// target page is remapped (PTE write + INVLPG) halfway: the first 50 calls
// run "add eax, 1; ret" (physical 0x20000), the last 50 "add eax, 0x100;
// ret" (physical 0x21000), both at linear 0x400000. Paging: directory at
// 0x10000, identity table at 0x11000 for the first 4 MiB, 0x12000 for the next.
//   xor eax, eax; xor esi, esi; mov edi, 0x12000
//   1: call 0x400000; inc esi; cmp esi, 50; jne 2f
//      mov dword [edi], 0x21003; invlpg [0x400000]
//   2: cmp esi, 100; jne 1b; hlt
const std::vector<uint8_t> k_remap_call_target = {
    0x31, 0xc0, 0x31, 0xf6, 0xbf, 0x00, 0x20, 0x01, 0x00, 0xe8, 0xf2, 0xef, 0x3f, 0x00,
    0x46, 0x83, 0xfe, 0x32, 0x75, 0x0d, 0xc7, 0x07, 0x03, 0x10, 0x02, 0x00, 0x0f, 0x01,
    0x3d, 0x00, 0x00, 0x40, 0x00, 0x83, 0xfe, 0x64, 0x75, 0xe3, 0xf4};

// Paging on: directory at 0x10000, identity table at 0x11000 for the first
// 4 MiB, table 0x12000 for the next 4 MiB with `pages` (physical page of
// linear 0x400000 + 4 KiB * i).
void paged32(Guest& g, const std::vector<uint32_t>& pages) {
  auto w32 = [&](uint32_t a, uint32_t v) { std::memcpy(&g.ram[a], &v, 4); };
  w32(0x10000, 0x11003);  // PDE 0 -> table 0x11000 (present, writable)
  w32(0x10004, 0x12003);  // PDE 1 -> table 0x12000
  for (uint32_t i = 0; i < 1024; ++i) w32(0x11000 + 4 * i, i * 0x1000 + 3);
  for (uint32_t i = 0; i < pages.size(); ++i) w32(0x12000 + 4 * i, pages[i] | 3);
  g.flat32(k_code);
  cpu::SpecialRegs s = g.vcpu->get_sregs();
  s.cr3 = 0x10000;
  s.cr0 |= 0x80000000u;
  ASSERT_TRUE(g.vcpu->set_sregs(s));
}

// Runs `code` at k_code in mode m with paging on (paged32 `pages`) and each
// of `pieces` loaded at its physical address, to HLT; returns the registers.
cpu::Regs run_paged_to_hlt(Mode m, const std::vector<uint8_t>& code,
                           const std::vector<std::pair<uint32_t, std::vector<uint8_t>>>& pieces,
                           const std::vector<uint32_t>& pages) {
  JitEnv env(m);
  const uint64_t before = soft::jit::blocks_compiled();
  Guest g;
  g.load(k_code, code);
  for (const auto& [at, bytes] : pieces) g.load(at, bytes);
  paged32(g, pages);
  Watchdog w(g);
  EXPECT_EQ(g.run().reason, cpu::ExitReason::Hlt);
  if (m == Mode::Compiled) EXPECT_GT(soft::jit::blocks_compiled(), before);
  return g.regs();
}

TEST(Jit, LinkToARemappedPageIsNotFollowedAfterInvlpg) {
  for (Mode m : {Mode::Interpreter, Mode::Compiled}) {
    const cpu::Regs r = run_paged_to_hlt(m, k_remap_call_target,
                                         {{0x20000, {0x83, 0xc0, 0x01, 0xc3}},                 // add eax, 1; ret
                                          {0x21000, {0x05, 0x00, 0x01, 0x00, 0x00, 0xc3}}},    // add eax, 0x100; ret
                                         {0x20000});  // linear 0x400000 -> 0x20000
    EXPECT_EQ(r.gpr[0], 50u + 50u * 0x100u) << (m == Mode::Compiled ? "compiled" : "interpreter");
  }
}

// One physical page of code at two linear addresses (0x400000 and 0x402000)
// is one compiled block. Its direct JMP goes to the next linear page, which
// maps to different code after each alias: the link made when it ran at
// one address must not be taken when it runs at the other.
//   at 0x400000 and 0x402000 (physical 0x20000): inc eax; jmp $ + 0x1000
//   0x401000 (physical 0x21000): add ebx, 1; ret
//   0x403000 (physical 0x22000): add ebx, 0x100; ret
//   main: xor eax, eax; xor ebx, ebx; mov esi, 50
//         1: call 0x400000; call 0x402000; dec esi; jnz 1b; hlt
const std::vector<uint8_t> k_aliased_calls = {0x31, 0xc0, 0x31, 0xdb, 0xbe, 0x32, 0x00, 0x00, 0x00, 0xe8, 0xf2, 0xef,
                                              0x3f, 0x00, 0xe8, 0xed, 0x0f, 0x40, 0x00, 0x4e, 0x75, 0xf3, 0xf4};

TEST(Jit, LinkIsNotTakenFromTheSameCodeAtAnotherAddress) {
  for (Mode m : {Mode::Interpreter, Mode::Compiled}) {
    const cpu::Regs r = run_paged_to_hlt(m, k_aliased_calls,
                                         {{0x20000, {0x40, 0xe9, 0xfa, 0x0f, 0x00, 0x00}},  // inc eax; jmp $+0x1000
                                          {0x21000, {0x83, 0xc3, 0x01, 0xc3}},              // add ebx, 1; ret
                                          {0x22000, {0x81, 0xc3, 0x00, 0x01, 0x00, 0x00, 0xc3}}},  // add ebx, 0x100; ret
                                         {0x20000, 0x21000, 0x20000, 0x22000});
    EXPECT_EQ(r.gpr[0], 100u);
    EXPECT_EQ(r.gpr[3], 50u + 50u * 0x100u) << (m == Mode::Compiled ? "compiled" : "interpreter");
  }
}

// Compiled blocks go from one to the next without the engine loop (the
// dispatcher); a kick from another thread must still end KVM_RUN, and a
// block's guest-visible work must be the interpreter's.
//   1: inc eax; add ebx, 3; jmp 1b
TEST(Jit, KickEndsAChainedLoop) {
  for (Mode m : {Mode::Interpreter, Mode::Compiled}) {
    JitEnv env(m);
    Guest g;
    g.load(k_code, {0x40, 0x83, 0xc3, 0x03, 0xeb, 0xfa});
    g.flat32(k_code);
    std::atomic<bool> done{false};
    std::thread kicker([&] {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      g.kick.store(true, std::memory_order_release);
      // A dispatcher that never looks would leave run() spinning: fail loudly
      // instead of hanging the suite.
      for (int i = 0; i < 1000 && !done.load(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
      if (!done.load()) {
        std::fprintf(stderr, "Jit.KickEndsAChainedLoop: KVM_RUN ignored the kick\n");
        std::abort();
      }
    });
    const cpu::VcpuExit e = g.run();
    done.store(true);
    kicker.join();
    EXPECT_EQ(e.reason, cpu::ExitReason::Interrupted);
    const uint64_t n = g.gpr(0);
    EXPECT_GT(n, 1000u);
    EXPECT_EQ(g.gpr(3), uint64_t(uint32_t(3 * n)));
  }
}

}  // namespace
}  // namespace anykvm::test
