// Differential harness for the MMX/SSE handlers: one instruction runs natively
// (in this 64-bit process, from an executable page, between a prologue that
// loads XMM0-7, MM0-7, EAX..EDI, EFLAGS and MXCSR from a context and an
// epilogue that stores them back) and in the engine (a flat 32-bit guest at
// CPL 0 whose state is set on the soft Cpu directly), then the contexts are
// compared. The encodings used (ModRM register forms and [edi]/[edi+disp8])
// mean the same in 64-bit and 32-bit code, and EDI points at a 64-byte buffer
// on both sides. Guest exceptions go through a 32-entry IDT to one HLT each,
// so a case reports the vector it raised.
#pragma once
#include <gtest/gtest.h>
#include <sys/mman.h>

#include <cstdint>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "cpu/backend.h"
#include "cpu/soft/cpu.h"
#include "cpu/soft/soft_vcpu.h"
#include "x86/decode/insn.h"

namespace anykvm::simdtest {

struct alignas(16) Ctx {
  uint64_t xmm[8][2];  // 0
  uint64_t mm[8];      // 128
  uint64_t gpr[8];     // 192: eax ecx edx ebx (esp) (ebp) esi edi
  uint32_t mxcsr;      // 256
  uint32_t pad;        // 260
  uint64_t rflags;     // 264
  uint64_t scratch[2]; // 272
  alignas(16) uint8_t mem[64];  // 288: the [edi] buffer
};
static_assert(offsetof(Ctx, mxcsr) == 256 && offsetof(Ctx, rflags) == 264 && offsetof(Ctx, mem) == 288);

extern "C" void simd_native_exec(Ctx* ctx, const void* code);
// Runs simd_native_exec; an unmasked SIMD exception (SIGFPE) ends the run with
// the registers and MXCSR of the trapping instruction in `ctx`. Returns 19 for
// such a trap, -1 otherwise.
int native_exec_trapping(Ctx& ctx, const void* code);

constexpr uint32_t k_code = 0x1000, k_gdt = 0x2000, k_idt = 0x3000, k_vec_stub = 0x4000, k_mem = 0x8000;
constexpr uint32_t k_status = 0x8d5;  // CF PF AF ZF SF OF

struct Result {
  Ctx ctx;
  int vector = -1;  // -1: retired
};

class Harness {
 public:
  Harness() {
    m_page = static_cast<uint8_t*>(
        mmap(nullptr, 4096, PROT_READ | PROT_WRITE | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
    if (m_page == MAP_FAILED) m_page = nullptr;
    auto map = std::make_shared<cpu::MemoryMap>();
    cpu::RamRegion r;
    r.start = Gpa(0);
    r.size = m_ram.size();
    r.hva = m_ram.data();
    map->regions.push_back(r);
    m_src.publish(map);
    m_vm = cpu::make_soft_vm(m_src);
    m_vcpu = m_vm->create_vcpu(VcpuId(0));
    m_ctl.immediate_exit = &m_immediate_exit;
    m_ctl.kick = &m_kick;
    m_ctl.pio_page = m_pio.data();
    // GDT: null, flat code 0x08, flat data 0x10. IDT: vector v -> k_vec_stub + 8v (HLT).
    auto w64 = [&](uint32_t a, uint64_t v) { std::memcpy(&m_ram[a], &v, 8); };
    w64(k_gdt + 8, 0x00cf9b000000ffffull);
    w64(k_gdt + 16, 0x00cf93000000ffffull);
    for (uint32_t v = 0; v < 32; ++v) {
      uint32_t off = k_vec_stub + 8 * v;
      w64(k_idt + 8 * v, (off & 0xffff) | (uint64_t(0x08) << 16) | (uint64_t(0x8e) << 40) |
                             (uint64_t(off >> 16) << 48));
      m_ram[off] = 0xf4;
    }
  }
  ~Harness() {
    if (m_page) munmap(m_page, 4096);
  }
  bool native_ok() const { return m_page != nullptr; }
  soft::Cpu& cpu() { return static_cast<soft::SoftVcpu&>(*m_vcpu).cpu(); }
  uint8_t* ram() { return m_ram.data(); }

  Result native(const std::vector<uint8_t>& code, const Ctx& in) {
    Result r;
    r.ctx = in;
    r.ctx.rflags = (in.rflags & k_status) | 2;
    std::memcpy(m_page, code.data(), code.size());
    m_page[code.size()] = 0xc3;  // ret
    r.ctx.gpr[7] = reinterpret_cast<uint64_t>(r.ctx.mem) + (in.gpr[7] - k_mem);
    r.vector = native_exec_trapping(r.ctx, m_page);
    r.ctx.gpr[7] = uint32_t(r.ctx.gpr[7] - reinterpret_cast<uint64_t>(r.ctx.mem) + k_mem);
    r.ctx.rflags &= k_status;
    return r;
  }

  // cr0/cr4 bits to force for this run (defaults: SSE enabled, #XM on).
  uint64_t cr0 = 0x11 | soft::cr0::NE, cr4 = soft::cr4::OSFXSR | soft::cr4::OSXMMEXCPT;

  Result engine(const std::vector<uint8_t>& code, const Ctx& in) {
    prepare(code, in);
    cpu::VcpuExit e = m_vcpu->run(m_ctl);
    EXPECT_EQ(int(e.reason), int(cpu::ExitReason::Hlt));
    return collect(code, in);
  }
  cpu::VcpuExit run() { return m_vcpu->run(m_ctl); }
  cpu::VcpuBackend& vcpu() { return *m_vcpu; }

  // Sets up the guest for `code` on `in` without running it.
  void prepare(const std::vector<uint8_t>& code, const Ctx& in) {
    cpu::SpecialRegs s = m_vcpu->get_sregs();
    for (int k = 0; k < 6; ++k) {
      cpu::Segment& g = s.seg[k];
      g = cpu::Segment{};
      g.selector = k == 1 ? 0x08 : 0x10;
      g.limit = 0xffffffff;
      g.type = k == 1 ? 0xb : 0x3;
      g.present = g.s = g.db = g.g = 1;
    }
    s.gdt = {k_gdt, 23};
    s.idt = {k_idt, 32 * 8 - 1};
    s.cr0 = cr0;
    s.cr4 = cr4;
    EXPECT_TRUE(m_vcpu->set_sregs(s));
    std::memcpy(&m_ram[k_code], code.data(), code.size());
    m_ram[k_code + code.size()] = 0xf4;
    std::memcpy(&m_ram[k_mem], in.mem, sizeof in.mem);
    cpu::Regs regs{};
    for (int k = 0; k < 8; ++k) regs.gpr[k] = uint32_t(in.gpr[k]);
    regs.gpr[4] = 0x80000;
    regs.rip = k_code;
    regs.rflags = (in.rflags & k_status) | 2;
    m_vcpu->set_regs(regs);
    soft::Cpu& c = cpu();
    for (int k = 0; k < 8; ++k) {
      c.fpu.xmm[k] = {in.xmm[k][0], in.xmm[k][1]};
      c.fpu.st[k].mantissa = in.mm[k];
      c.fpu.st[k].sign_exp = 0xffff;
    }
    c.fpu.mxcsr = in.mxcsr;
  }
  // The state after the guest stopped at a HLT.
  Result collect(const std::vector<uint8_t>& code, const Ctx& in) {
    soft::Cpu& c = cpu();
    Result r;
    r.ctx = in;
    cpu::Regs o = m_vcpu->get_regs();
    uint32_t end = uint32_t(o.rip - 1);
    if (end >= k_vec_stub && end < k_vec_stub + 256) r.vector = int((end - k_vec_stub) / 8);
    else EXPECT_EQ(end, k_code + code.size()) << "engine stopped elsewhere";
    for (int k = 0; k < 8; ++k) {
      if (k != 4 && k != 5) r.ctx.gpr[k] = uint32_t(o.gpr[k]);
      r.ctx.xmm[k][0] = c.fpu.xmm[k][0];
      r.ctx.xmm[k][1] = c.fpu.xmm[k][1];
      r.ctx.mm[k] = c.fpu.st[k].mantissa;
    }
    r.ctx.mxcsr = c.fpu.mxcsr;
    r.ctx.rflags = o.rflags & k_status;
    std::memcpy(r.ctx.mem, &m_ram[k_mem], sizeof r.ctx.mem);
    return r;
  }

 private:
  std::vector<uint8_t> m_ram = std::vector<uint8_t>(1u << 20);
  std::vector<uint8_t> m_pio = std::vector<uint8_t>(4096);
  uint8_t* m_page = nullptr;
  cpu::MemoryMapSource m_src;
  std::unique_ptr<cpu::VmBackend> m_vm;
  std::unique_ptr<cpu::VcpuBackend> m_vcpu;
  std::atomic<bool> m_kick{false};
  volatile uint8_t m_immediate_exit = 0;
  cpu::RunControl m_ctl;
};

Harness& harness();

// Text of a context for failure reports.
std::string dump(const Ctx& c, bool mmx);
std::string hex(const std::vector<uint8_t>& code);

// Edge-case operand pools.
uint32_t pick_f32(std::mt19937_64& g);
uint64_t pick_f64(std::mt19937_64& g);
uint64_t pick_int_q(std::mt19937_64& g);  // 8 random edge-case bytes/words/dwords
uint32_t pick_mxcsr(std::mt19937_64& g);  // rounding, DAZ, FTZ, sticky flags, all masked

// Compares native and engine for `code` on `in`; reports the first difference.
// `mmx` also compares MM0-7; `flags` compares the status flags.
::testing::AssertionResult same(const std::vector<uint8_t>& code, const Ctx& in, bool mmx, bool flags);

// A family of encodings run over random edge-case inputs.
enum class Lane { F32, F64, I32 };
enum class Imm { None, Pred, Byte };
enum class Modrm { Both, RegOnly, MemOnly };
struct Form {
  std::vector<uint8_t> op;  // prefix (or none), 0F, opcode
  Lane lane;
  Imm imm = Imm::None;
  Modrm modrm = Modrm::Both;
  uint8_t reg = 0;          // ModRM.reg (group number for 0F 71-73)
  bool small_count = false; // MM1/XMM1 and [edi] hold shift counts 0..70
  bool unmask = false;      // random exception masks cleared (native traps with SIGFPE)
};
void fill(Ctx& c, Lane lane, std::mt19937_64& g);
void run_forms(const char* name, const std::vector<Form>& forms, bool mmx, bool flags, int cases = 300);

}  // namespace anykvm::simdtest
