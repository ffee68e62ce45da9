// Block chaining (soft_vcpu.cpp Block::Link): a block remembers the block it
// went to and takes it again without the block-cache lookup. Each test runs
// the same control transfer before and after something that must change where
// it lands — code rewritten by the guest or by user space, a PTE change with
// INVLPG, a CR3 load — so a stale link shows up as the old target's result.
#include <cstring>

#include "harness.h"

namespace anykvm::test {
namespace {

// A tiny 32-bit assembler with absolute targets (the code is placed at `base`).
struct Asm {
  uint32_t base;
  std::vector<uint8_t> b;
  explicit Asm(uint32_t at) : base(at) {}
  uint32_t here() const { return base + uint32_t(b.size()); }
  void bytes(std::initializer_list<uint8_t> v) { b.insert(b.end(), v); }
  void u32(uint32_t v) {
    for (int i = 0; i < 4; ++i) b.push_back(uint8_t(v >> (8 * i)));
  }
  void mov_r32_imm(uint8_t r, uint32_t v) {  // B8+r id
    b.push_back(uint8_t(0xb8 + r));
    u32(v);
  }
  void call(uint32_t target) {  // E8 cd
    b.push_back(0xe8);
    u32(target - (here() + 4));
  }
  void jmp(uint32_t target) {  // E9 cd
    b.push_back(0xe9);
    u32(target - (here() + 4));
  }
  void jnz(uint32_t target) {  // 75 cb
    b.push_back(0x75);
    b.push_back(uint8_t(int8_t(target - (here() + 1))));
  }
  void mov_mem_imm(uint32_t addr, uint32_t v) {  // C7 05 addr imm: mov dword [addr], imm
    bytes({0xc7, 0x05});
    u32(addr);
    u32(v);
  }
  void invlpg(uint32_t addr) {  // 0F 01 /7, disp32
    bytes({0x0f, 0x01, 0x3d});
    u32(addr);
  }
};

enum : uint8_t { EAX = 0, ECX = 1, EDX = 2, EBX = 3, ESI = 6 };

// Two passes through the same `call` / `jmp` instructions, with `between`
// emitted after the first pass. EBX sums EAX as returned by the callee.
//   xor ebx, ebx; mov esi, 2
//   outer: mov ecx, 3
//   inner: call target; add ebx, eax; dec ecx; jnz inner
//          <between>; dec esi; jnz outer; hlt
template <typename F>
std::vector<uint8_t> two_passes(uint32_t base, uint32_t target, F between) {
  Asm a(base);
  a.bytes({0x31, 0xdb});  // xor ebx, ebx
  a.mov_r32_imm(ESI, 2);
  uint32_t outer = a.here();
  a.mov_r32_imm(ECX, 3);
  uint32_t inner = a.here();
  a.call(target);
  a.bytes({0x01, 0xc3});  // add ebx, eax
  a.bytes({0x49});        // dec ecx
  a.jnz(inner);
  between(a);
  a.bytes({0x4e});  // dec esi
  a.jnz(outer);
  a.bytes({0xf4});  // hlt
  return a.b;
}

// A function returning `value`: mov eax, value; ret.
std::vector<uint8_t> ret_value(uint32_t value) {
  Asm a(0);
  a.mov_r32_imm(EAX, value);
  a.bytes({0xc3});
  return a.b;
}

// The guest rewrites the rel32 of a `jmp` that the same call has already
// chained through (the jmp sits on its own page, so only its blocks go).
TEST(EngineChain, GuestRewritesChainedJumpTarget) {
  Guest g;
  constexpr uint32_t k_main = 0x1000, k_stub = 0x3000, k_old = 0x4000, k_new = 0x4100;
  Asm stub(k_stub);
  stub.jmp(k_old);
  g.load(k_stub, stub.b);
  g.load(k_old, ret_value(1));
  g.load(k_new, ret_value(2));
  uint32_t new_rel = k_new - (k_stub + 5);
  g.load(k_main, two_passes(k_main, k_stub, [&](Asm& a) { a.mov_mem_imm(k_stub + 1, new_rel); }));
  g.flat32(k_main);
  cpu::VcpuExit e = g.run();
  ASSERT_EQ(e.reason, cpu::ExitReason::Hlt);
  EXPECT_EQ(g.gpr(EBX), 3u * 1 + 3u * 2);
}

// User space rewrites a chained-to block between two KVM_RUNs (the engine
// sees such writes only by revalidating at entry).
TEST(EngineChain, UserSpaceRewriteBetweenRuns) {
  Guest g;
  constexpr uint32_t k_main = 0x1000, k_fn = 0x3000;
  // loop: call fn; add ebx, eax; dec ecx; jnz loop; hlt — run twice.
  Asm a(k_main);
  a.bytes({0x31, 0xdb});
  a.mov_r32_imm(ECX, 3);
  uint32_t loop = a.here();
  a.call(k_fn);
  a.bytes({0x01, 0xc3, 0x49});
  a.jnz(loop);
  a.bytes({0xf4});
  g.load(k_main, a.b);
  g.load(k_fn, ret_value(1));
  g.flat32(k_main);
  ASSERT_EQ(g.run().reason, cpu::ExitReason::Hlt);
  EXPECT_EQ(g.gpr(EBX), 3u);
  g.load(k_fn, ret_value(5));  // same length, other immediate
  cpu::Regs r = g.regs();
  r.rip = k_main;
  g.vcpu->set_regs(r);
  ASSERT_EQ(g.run().reason, cpu::ExitReason::Hlt);
  EXPECT_EQ(g.gpr(EBX), 15u);
}

// Paging: linear page V maps first to P1 (returns 1), then to P2 (returns 2).
constexpr uint32_t k_pd1 = 0x10000, k_pt_low = 0x11000, k_pt_v1 = 0x12000, k_pd2 = 0x13000, k_pt_v2 = 0x14000;
constexpr uint32_t k_v = 0x400000, k_p1 = 0x20000, k_p2 = 0x21000;
constexpr uint32_t k_pte_rw = 0x3;

void build_page_tables(Guest& g) {
  auto w32 = [&](uint64_t a, uint32_t v) { std::memcpy(&g.ram.at(a), &v, 4); };
  for (uint32_t i = 0; i < 1024; ++i) w32(k_pt_low + 4 * i, (i << 12) | k_pte_rw);  // identity 0-4 MiB
  w32(k_pt_v1, k_p1 | k_pte_rw);
  w32(k_pt_v2, k_p2 | k_pte_rw);
  w32(k_pd1 + 0, k_pt_low | k_pte_rw);
  w32(k_pd1 + 4, k_pt_v1 | k_pte_rw);
  w32(k_pd2 + 0, k_pt_low | k_pte_rw);
  w32(k_pd2 + 4, k_pt_v2 | k_pte_rw);
  g.load(k_p1, ret_value(1));
  g.load(k_p2, ret_value(2));
}

void enable_paging(Guest& g, uint32_t cr3) {
  cpu::SpecialRegs s = g.vcpu->get_sregs();
  s.cr3 = cr3;
  s.cr0 = 0x80000011;  // PG | ET | PE
  ASSERT_TRUE(g.vcpu->set_sregs(s));
}

TEST(EngineChain, PteChangeWithInvlpg) {
  Guest g;
  constexpr uint32_t k_main = 0x1000;
  build_page_tables(g);
  g.load(k_main, two_passes(k_main, k_v, [](Asm& a) {
    a.mov_mem_imm(k_pt_v1, k_p2 | k_pte_rw);
    a.invlpg(k_v);
  }));
  g.flat32(k_main);
  enable_paging(g, k_pd1);
  cpu::VcpuExit e = g.run();
  ASSERT_EQ(e.reason, cpu::ExitReason::Hlt);
  EXPECT_EQ(g.gpr(EBX), 3u * 1 + 3u * 2);
}

TEST(EngineChain, Cr3Load) {
  Guest g;
  constexpr uint32_t k_main = 0x1000;
  build_page_tables(g);
  g.load(k_main, two_passes(k_main, k_v, [](Asm& a) {
    a.mov_r32_imm(EAX, k_pd2);
    a.bytes({0x0f, 0x22, 0xd8});  // mov cr3, eax
  }));
  g.flat32(k_main);
  enable_paging(g, k_pd1);
  cpu::VcpuExit e = g.run();
  ASSERT_EQ(e.reason, cpu::ExitReason::Hlt);
  EXPECT_EQ(g.gpr(EBX), 3u * 1 + 3u * 2);
}

// One block (same physical address, same code size) entered with two CS
// bases: its jump's target IP wraps at 64 KiB, so the successor's linear
// address differs. Real mode: 0000:FFF0 and 0100:EFF0 are both linear 0xFFF0.
TEST(EngineChain, SameBlockOtherCsBase) {
  Guest g;
  g.load(0xfff0, {0xe9, 0x1d, 0x00});        // jmp IP+0x20: 0000:0010 or 0100:F010
  g.load(0x00010, {0xb8, 0x01, 0x00, 0xcb});  // mov ax, 1 ; retf
  g.load(0x10010, {0xb8, 0x02, 0x00, 0xcb});  // mov ax, 2 ; retf
  g.load(0x500, {0x31, 0xdb,                    // xor bx, bx
                 0x9a, 0xf0, 0xff, 0x00, 0x00,  // call far 0000:FFF0
                 0x01, 0xc3,                    // add bx, ax
                 0x9a, 0xf0, 0xef, 0x00, 0x01,  // call far 0100:EFF0
                 0x01, 0xc3,                    // add bx, ax
                 0x9a, 0xf0, 0xff, 0x00, 0x00,  // call far 0000:FFF0
                 0x01, 0xc3,                    // add bx, ax
                 0xf4});                        // hlt
  g.real_mode(0x500);
  cpu::VcpuExit e = g.run();
  ASSERT_EQ(e.reason, cpu::ExitReason::Hlt);
  EXPECT_EQ(g.gpr(EBX) & 0xffff, 1u + 2u + 1u);
}

}  // namespace
}  // namespace anykvm::test
