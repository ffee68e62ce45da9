// The engine side: runs a BatchImage in the software CPU (cpu::make_soft_vm)
// as a flat 32-bit protected-mode guest at CPL 0 whose RAM is mapped at the
// native region's address, so every pointer in the cases means the same thing
// on both sides. Exceptions go through a 32-entry IDT to one HLT per vector;
// the runner reads the vector from where it stopped and the faulting EIP from
// the exception frame, then resumes at the next case. A watchdog kicks a run
// that takes too long (an engine looping forever must not hang CI).
#pragma once
#include <atomic>
#include <memory>

#include "cpu/backend.h"
#include "diff_case.h"

namespace anykvm::difftest {

class EngineRunner final : public Runner {
 public:
  explicit EngineRunner(uint32_t base);
  ~EngineRunner() override;
  const char* name() const override { return "engine"; }
  void run(const BatchImage& img, std::vector<Outcome>& out, std::vector<uint8_t>& windows) override;

 private:
  void enter(uint32_t eip);
  uint32_t read32(uint32_t addr) const;

  uint32_t m_base;
  uint8_t* m_ram = nullptr;
  std::vector<uint8_t> m_pio = std::vector<uint8_t>(4096);
  cpu::MemoryMapSource m_src;
  std::unique_ptr<cpu::VmBackend> m_vm;
  std::unique_ptr<cpu::VcpuBackend> m_vcpu;
  std::atomic<bool> m_kick{false};
  volatile uint8_t m_immediate_exit = 0;
  cpu::RunControl m_ctl;
};

}  // namespace anykvm::difftest
