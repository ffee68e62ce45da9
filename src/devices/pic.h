// The 8259A programmable interrupt controller pair of the PC/AT (Intel 8259A
// datasheet, "Programming the 8259A": ICW1-4, OCW1-3) with the PIIX edge/level
// control registers (ELCR, ports 0x4d0/0x4d1; Intel 82371AB datasheet 4.1.13).
// The slave's INT output is wired to the master's IR2 (cascade). Modelled:
// fully nested and special fully nested modes, auto-EOI with rotation,
// specific/non-specific EOI, rotation and set-priority, special mask, poll,
// IRR/ISR reads. Left out: 8080/85 mode, buffered mode, and ICW1.LTIM (the PIIX
// decides edge/level per pin through the ELCR, which is what PCs do).
// State round-trips through PicChipState, shaped like Linux's struct kvm_pic_state.
#pragma once
#include <cstdint>

#include "base/types.h"
#include "devices/edges.h"

namespace anykvm::devices {

// ICW1 (port 0x20/0xa0 with D4 set).
enum class Icw1 : uint8_t {
  Ic4 = 0x01,     // ICW4 follows
  Single = 0x02,  // no ICW3: single PIC (we are always cascaded; only the sequence changes)
  Adi = 0x04,     // call address interval (8080 mode only)
  Ltim = 0x08,    // level-triggered mode (ignored: the ELCR decides)
  Init = 0x10,    // this is ICW1
};

// ICW4.
enum class Icw4 : uint8_t {
  Mode8086 = 0x01,
  AutoEoi = 0x02,
  BufferedMaster = 0x04,
  Buffered = 0x08,
  SpecialFullyNested = 0x10,
};

// OCW3 (port 0x20/0xa0 with D4 clear and D3 set).
enum class Ocw3 : uint8_t {
  ReadIsr = 0x01,         // RIS: with RR, select ISR (else IRR)
  ReadRegister = 0x02,    // RR: the RIS bit is valid
  Poll = 0x04,            // P: next read is a poll
  Select = 0x08,          // marks the word as OCW3
  SpecialMask = 0x20,     // SMM: value for the special mask mode
  SetSpecialMask = 0x40,  // ESMM: SMM is valid
};

// OCW2 bits 7:5 (R, SL, EOI); bits 2:0 are the level L.
enum class Ocw2Command : uint8_t {
  ClearRotateInAutoEoi = 0,
  NonSpecificEoi = 1,
  NoOp = 2,
  SpecificEoi = 3,
  SetRotateInAutoEoi = 4,
  RotateOnNonSpecificEoi = 5,
  SetPriority = 6,
  RotateOnSpecificEoi = 7,
};

// PicChipState::init_state: which initialization word the odd port expects.
enum class PicInitState : uint8_t { Ready = 0, Icw2 = 1, Icw3 = 2, Icw4 = 3 };

// Same fields, order and meaning as Linux's struct kvm_pic_state.
struct PicChipState {
  uint8_t last_irr;  // input line levels (edge detection)
  uint8_t irr;
  uint8_t imr;
  uint8_t isr;
  uint8_t priority_add;     // the IR number that has the highest priority
  uint8_t irq_base;         // ICW2 & 0xf8
  uint8_t read_reg_select;  // 1: a read of the even port returns ISR, 0: IRR
  uint8_t poll;
  uint8_t special_mask;
  uint8_t init_state;  // PicInitState
  uint8_t auto_eoi;
  uint8_t rotate_on_auto_eoi;
  uint8_t special_fully_nested_mode;
  uint8_t init4;  // ICW4 expected
  uint8_t elcr;   // 1 bits: level-triggered pin
  uint8_t elcr_mask;
};
static_assert(sizeof(PicChipState) == 16);

// One 8259A. Owned by PicPair; no locking of its own.
class Pic8259 {
 public:
  explicit Pic8259(bool master);

  void write(bool a0, uint8_t value);
  uint8_t read(bool a0);
  void write_elcr(uint8_t value);
  uint8_t read_elcr() const { return m_s.elcr; }

  // Drive input pin 0-7. Returns what KVM_IRQ_LINE_STATUS would say.
  IrqResult set_input(unsigned pin, bool level);
  // The IR this chip would present on INT now, or -1.
  int pending_irq() const;
  // INTA: mark `irq` in service (or auto-EOI it) and consume an edge request.
  void acknowledge(unsigned irq);

  const PicChipState& state() const { return m_s; }
  void set_state(const PicChipState& s);
  void reset();

 private:
  int highest_priority(uint8_t mask) const;
  uint8_t level_pins() const;
  uint8_t poll_read();
  void write_icw1(uint8_t value);
  void write_ocw2(uint8_t value);
  void write_ocw3(uint8_t value);

  PicChipState m_s{};
  bool m_master;
  bool m_single = false;  // ICW1.SNGL of the sequence in progress (not in the uAPI struct)
};

// The master/slave pair as the CPU and the chipset see it. Single-threaded:
// the machine layer serialises calls (one lock around the pair).
class PicPair {
 public:
  enum class Chip : uint8_t { Master = 0, Slave = 1 };
  static constexpr uint16_t k_master_command = 0x20, k_master_data = 0x21;
  static constexpr uint16_t k_slave_command = 0xa0, k_slave_data = 0xa1;
  static constexpr uint16_t k_elcr_master = 0x4d0, k_elcr_slave = 0x4d1;
  static constexpr unsigned k_cascade_pin = 2;

  PicPair();

  static bool handles_port(Port port);
  uint8_t read_port(Port port);
  void write_port(Port port, uint8_t value);

  // ISA IRQ 0-15 (8-15 on the slave). IRQ2 is the cascade and cannot be raised.
  IrqResult set_irq(unsigned irq, bool level);

  // The master's INT pin.
  bool has_interrupt() const;
  // The two INTA cycles: the vector the CPU receives. With no request left
  // (it went away since INT rose) this is the spurious IRQ7 (or IRQ15) vector.
  Vector acknowledge();
  // Optional: told every time the master's INT pin changes (to LAPIC LINT0 or
  // to wake a vCPU). Not owned.
  void set_output(IrqLine* line) { m_output = line; }

  PicChipState get_state(Chip chip) const;
  void set_state(Chip chip, const PicChipState& s);
  void reset();

 private:
  Pic8259& chip(Chip c) { return m_chips[unsigned(c)]; }
  void update();  // slave INT -> master IR2, then master INT -> m_output

  Pic8259 m_chips[2];
  IrqLine* m_output = nullptr;
  bool m_output_level = false;
};

}  // namespace anykvm::devices
