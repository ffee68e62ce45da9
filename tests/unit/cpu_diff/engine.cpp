// The engine runner: guest setup (flat GDT, IDT of interrupt gates to HLT
// stubs, SDM vol. 3, 6.11) and the run loop that maps every stop back to a case.
#include "engine.h"

#include <sys/mman.h>

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <thread>

namespace anykvm::difftest {
namespace {

constexpr uint16_t CODE_SEL = 0x08, DATA_SEL = 0x10;
constexpr uint16_t LDT_SEL = 0x18;  // no GDT entry: the LDTR is loaded directly through the sregs
constexpr int GS_INDEX = 5;         // cpu::SegReg::Gs
constexpr unsigned k_vectors = 32;
constexpr uint8_t ENGINE_POISON = 0x5a;  // differs from the native poison on purpose
constexpr uint8_t HLT = 0xf4;
constexpr uint8_t GATE_INT32 = 0x8e;     // present, DPL 0, 32-bit interrupt gate
// Only a guard against a case that loops forever: a batch of thousands of cases
// under ASan on a loaded 2-core CI machine takes minutes, so this is generous
// (30 s made CpuDiffAlu.Sbb fail under ASan with no engine fault).
constexpr auto k_watchdog = std::chrono::seconds(900);

const char* exit_name(cpu::ExitReason r) {
  switch (r) {
    case cpu::ExitReason::Io: return "Io";
    case cpu::ExitReason::Mmio: return "Mmio";
    case cpu::ExitReason::Hlt: return "Hlt";
    case cpu::ExitReason::IrqWindowOpen: return "IrqWindowOpen";
    case cpu::ExitReason::Shutdown: return "Shutdown";
    case cpu::ExitReason::InternalError: return "InternalError";
    case cpu::ExitReason::Debug: return "Debug";
    case cpu::ExitReason::Interrupted: return "Interrupted (watchdog)";
    case cpu::ExitReason::IoapicEoi: return "IoapicEoi";
  }
  return "?";
}

cpu::Segment flat(uint16_t sel, uint8_t type) {
  cpu::Segment s;
  s.selector = sel;
  s.base = 0;
  s.limit = 0xffffffff;
  s.type = type;
  s.present = 1;
  s.s = 1;
  s.db = 1;
  s.g = 1;
  return s;
}

// Sets `kick` if a run lasts longer than the watchdog period.
class Watchdog {
 public:
  explicit Watchdog(std::atomic<bool>& kick)
      : m_thread([this, &kick] {
          std::unique_lock<std::mutex> lk(m_mu);
          if (!m_cv.wait_for(lk, k_watchdog, [this] { return m_done; })) kick.store(true, std::memory_order_release);
        }) {}
  ~Watchdog() {
    {
      std::lock_guard<std::mutex> lk(m_mu);
      m_done = true;
    }
    m_cv.notify_all();
    m_thread.join();
  }

 private:
  std::mutex m_mu;
  std::condition_variable m_cv;
  bool m_done = false;
  std::thread m_thread;
};

}  // namespace

EngineRunner::EngineRunner(uint32_t base) : m_base(base) {
  void* p = mmap(nullptr, layout::SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) {
    std::perror("cpu_diff: guest RAM");
    std::abort();
  }
  m_ram = static_cast<uint8_t*>(p);
  auto map = std::make_shared<cpu::MemoryMap>();
  cpu::RamRegion r;
  r.start = Gpa(base);
  r.size = layout::SIZE;
  r.hva = m_ram;
  map->regions.push_back(r);
  m_src.publish(map);
  m_vm = cpu::make_soft_vm(m_src);
  m_vcpu = m_vm->create_vcpu(VcpuId(0));
  m_ctl.immediate_exit = &m_immediate_exit;
  m_ctl.kick = &m_kick;
  m_ctl.pio_page = m_pio.data();

  // GDT: null, flat 32-bit code (0x08), flat data (0x10).
  const uint8_t gdt[] = {0, 0, 0, 0, 0, 0, 0, 0,
                         0xff, 0xff, 0, 0, 0, 0x9a, 0xcf, 0,
                         0xff, 0xff, 0, 0, 0, 0x92, 0xcf, 0};
  std::memcpy(m_ram + layout::GDT, gdt, sizeof gdt);
  for (unsigned v = 0; v < k_vectors; ++v) {
    uint32_t handler = base + layout::FAULT_STUBS + 16 * v;
    uint8_t* g = m_ram + layout::IDT + 8 * v;
    g[0] = uint8_t(handler), g[1] = uint8_t(handler >> 8);
    g[2] = uint8_t(CODE_SEL), g[3] = 0;
    g[4] = 0, g[5] = GATE_INT32;
    g[6] = uint8_t(handler >> 16), g[7] = uint8_t(handler >> 24);
    m_ram[layout::FAULT_STUBS + 16 * v] = HLT;
  }
  m_ram[layout::EXIT] = HLT;
  // LDT entry 0: the SEL16 segment (32-bit data, RW, DPL 3, 4 GiB, base
  // SEG16_BASE), as the native side installs it with modify_ldt(2).
  const uint32_t b16 = base + layout::SEG16_BASE;
  const uint8_t ldt0[] = {0xff, 0xff, uint8_t(b16), uint8_t(b16 >> 8), uint8_t(b16 >> 16), 0xf3, 0xcf, uint8_t(b16 >> 24)};
  std::memcpy(m_ram + layout::LDT, ldt0, sizeof ldt0);
  // LDT entry 1: SEL_LIMITED, the same with a byte-granular limit (G = 0).
  constexpr uint32_t lim = layout::LIMITED_LIMIT;
  const uint8_t ldt1[] = {uint8_t(lim), uint8_t(lim >> 8), uint8_t(b16), uint8_t(b16 >> 8), uint8_t(b16 >> 16), 0xf3,
                          uint8_t(0x40 | (lim >> 16)), uint8_t(b16 >> 24)};
  std::memcpy(m_ram + layout::LDT + 8, ldt1, sizeof ldt1);
  // LDT entry 2: SEL_EXPAND_DOWN (type 7: data, expand-down, RW, accessed).
  constexpr uint32_t dlim = layout::EXPAND_DOWN_LIMIT;
  const uint32_t bd = base + layout::EXPAND_DOWN_BASE;
  const uint8_t ldt2[] = {uint8_t(dlim), uint8_t(dlim >> 8), uint8_t(bd), uint8_t(bd >> 8), uint8_t(bd >> 16), 0xf7,
                          uint8_t(0x40 | (dlim >> 16)), uint8_t(bd >> 24)};
  std::memcpy(m_ram + layout::LDT + 16, ldt2, sizeof ldt2);
}

EngineRunner::~EngineRunner() { munmap(m_ram, layout::SIZE); }

uint32_t EngineRunner::read32(uint32_t addr) const {
  uint32_t off = addr - m_base, v = 0;
  if (off <= layout::SIZE - 4) std::memcpy(&v, m_ram + off, 4);
  return v;
}

void EngineRunner::enter(uint32_t eip) {
  cpu::SpecialRegs s = m_vcpu->get_sregs();
  for (int i = 0; i < 6; ++i) s.seg[i] = flat(i == 1 ? CODE_SEL : DATA_SEL, i == 1 ? 0xb : 0x3);
  // GS = SEL16 (see layout::SEG16_BASE), from LDT entry 0.
  s.seg[GS_INDEX] = flat(layout::SEL16, 0x3);
  s.seg[GS_INDEX].base = m_base + layout::SEG16_BASE;
  s.seg[GS_INDEX].dpl = 3;
  s.ldt = cpu::Segment{};
  s.ldt.selector = LDT_SEL;
  s.ldt.base = m_base + layout::LDT;
  s.ldt.limit = layout::LDT_ENTRIES * 8 - 1;
  s.ldt.type = 2;  // LDT
  s.ldt.present = 1;
  s.cr0 = 0x11;  // PE | ET
  s.gdt = {m_base + layout::GDT, 23};
  s.idt = {m_base + layout::IDT, k_vectors * 8 - 1};
  if (!m_vcpu->set_sregs(s)) {
    std::fprintf(stderr, "cpu_diff: engine rejected the flat 32-bit sregs\n");
    std::abort();
  }
  cpu::Regs r{};
  r.rip = eip;
  r.rflags = fl::FIXED1;
  r.gpr[ESP] = m_base + layout::HSTACK_TOP;
  m_vcpu->set_regs(r);
}

void EngineRunner::run(const BatchImage& img, std::vector<Outcome>& out, std::vector<uint8_t>& windows) {
  std::memcpy(m_ram + layout::CODE, img.code.data(), img.code.size());
  if (!img.windows.empty()) std::memcpy(m_ram + layout::MEM, img.windows.data(), img.windows.size());
  std::memset(m_ram + layout::OUT, ENGINE_POISON, img.n * layout::OUT_STRIDE);
  out.assign(img.n, Outcome{});
  const uint32_t exit_rip = m_base + layout::EXIT + 1;
  const uint32_t stubs = m_base + layout::FAULT_STUBS;
  size_t start = 0;
  Watchdog dog(m_kick);
  while (start < img.n) {
    enter(img.frame[start]);
    cpu::VcpuExit e = m_vcpu->run(m_ctl);
    cpu::Regs r = m_vcpu->get_regs();
    uint32_t rip = uint32_t(r.rip);
    if (e.reason == cpu::ExitReason::Hlt && rip == exit_rip) break;
    int k;
    if (e.reason == cpu::ExitReason::Hlt && rip > stubs && rip <= stubs + 16 * k_vectors) {
      // An exception delivered through the IDT: vector from the stub, EIP from the frame.
      unsigned vec = (rip - 1 - stubs) / 16;
      uint32_t esp = uint32_t(r.gpr[ESP]);
      const bool err = vector_has_error_code(int(vec));
      uint32_t eip = read32(esp + (err ? 4 : 0));
      k = img.case_at(eip);
      if (k >= 0) {
        out[size_t(k)].fault = int(vec);
        out[size_t(k)].fault_eip = eip;
        out[size_t(k)].fault_error = err ? read32(esp) : 0;
        // The state at the exception: CPL 0 to CPL 0 pushes no stack switch,
        // so the frame is EIP, CS, EFLAGS (above the error code).
        const uint32_t frame = esp + (err ? 4 : 0);
        for (unsigned g = 0; g < 8; ++g) out[size_t(k)].gpr[g] = uint32_t(r.gpr[g]);
        out[size_t(k)].gpr[ESP] = frame + 12;
        out[size_t(k)].eflags = read32(frame + 8);
      }
    } else {
      k = img.case_at(rip);
      if (k < 0 && rip > 0) k = img.case_at(rip - 1);  // HLT/exit reported past the instruction
      char buf[128];
      std::snprintf(buf, sizeof buf, "engine: exit %s at eip %#x", exit_name(e.reason), rip);
      if (k >= 0) out[size_t(k)].note = buf;
      if (e.reason == cpu::ExitReason::Interrupted) {  // the watchdog fires once: skip the rest of the batch
        m_kick.store(false);
        if (k >= 0) {
          for (size_t i = size_t(k) + 1; i < img.n; ++i) out[i].note = "engine: not run after a watchdog timeout";
          break;
        }
      }
    }
    if (k < 0 || size_t(k) < start) {
      char buf[160];
      std::snprintf(buf, sizeof buf, "engine: stopped outside the frames (eip %#x, reason %s)", rip,
                    exit_name(e.reason));
      for (size_t i = start; i < img.n; ++i)
        if (out[i].note.empty()) out[i].note = buf;
      break;
    }
    start = size_t(k) + 1;
  }
  for (size_t i = 0; i < img.n; ++i) {
    if (out[i].fault >= 0 || !out[i].note.empty()) continue;  // (a fault's state came from its frame)
    const uint8_t* o = m_ram + layout::OUT + i * layout::OUT_STRIDE;
    std::memcpy(out[i].gpr.data(), o, 32);
    std::memcpy(&out[i].eflags, o + 32, 4);
  }
  windows.assign(m_ram + layout::MEM, m_ram + layout::MEM + img.windows.size());
}

}  // namespace anykvm::difftest
