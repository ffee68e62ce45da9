// The in-kernel irqchip through the real ABI (Linux 6.1: arch/x86/kvm/x86.c
// kvm_arch_vm_ioctl, virt/kvm/eventfd.c, virt/kvm/irqchip.c, irq_comm.c):
// errno of every irqchip ioctl, GET-SET-GET state round trips, guests whose
// HLT sleeps inside KVM_RUN until the PIT (through the PIC) or the LAPIC
// timer interrupts it, ioeventfd/irqfd/MSI delivery, kicks out of HLT, and a
// guest saved mid-activity and restored into a fresh VM that carries on.
#include <dirent.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <fstream>
#include <string>
#include <thread>

#include "abi.h"

namespace abitest {
namespace {

class Irqchip : public Abi {
 protected:
  // Real-mode guest with an in-kernel irqchip: RAM 0-0x8000 (code at 0x1000,
  // counter at 0x6000, stack below 0x7000), CS=0 IP=0x1000.
  struct IrqGuest {
    int vm = -1, vcpu = -1;
    kvm_run* run = nullptr;
    uint8_t* ram = nullptr;
  };
  IrqGuest irq_guest(const std::vector<uint8_t>& code, bool split = false, bool pit = true) {
    IrqGuest g;
    m_ram.push_back(std::make_unique<GuestMem>(0x8000));
    g.ram = m_ram.back()->ptr;
    if (!code.empty()) std::memcpy(g.ram + 0x1000, code.data(), code.size());
    g.vm = create_vm();
    if (split) {
      kvm_enable_cap cap{};
      cap.cap = KVM_CAP_SPLIT_IRQCHIP;
      cap.args[0] = 24;
      EXPECT_EQ(io(g.vm, KVM_ENABLE_CAP, &cap), 0);
    } else {
      EXPECT_EQ(io(g.vm, KVM_CREATE_IRQCHIP, 0ul), 0);
      if (pit) {
        kvm_pit_config pc{};
        EXPECT_EQ(io(g.vm, KVM_CREATE_PIT2, &pc), 0);
      }
    }
    EXPECT_EQ(set_region(g.vm, 0, 0, 0, 0x8000, m_ram.back()->uaddr()), 0);
    g.vcpu = create_vcpu(g.vm, 0);
    g.run = map_run(g.vcpu);
    start_real_mode_at_0x1000(g.vcpu);
    return g;
  }
  // KVM_RUN until an exit other than EINTR; the OUT port and its 16-bit value.
  long run_to_out(const IrqGuest& g, uint16_t& port, uint16_t& value) {
    long r;
    do {
      r = io(g.vcpu, KVM_RUN, 0ul);
    } while (r == -EINTR);
    if (r == 0 && g.run->exit_reason == KVM_EXIT_IO && g.run->io.direction == KVM_EXIT_IO_OUT) {
      port = g.run->io.port;
      value = 0;
      std::memcpy(&value, reinterpret_cast<uint8_t*>(g.run) + g.run->io.data_offset, g.run->io.size);
    }
    return r;
  }
  std::vector<std::unique_ptr<GuestMem>> m_ram;
};
ABI_SUITE(Irqchip);

// PIT channel 0 (mode 2, ~10 ms) through the master PIC at vector 0x20; the
// ISR counts ticks at 0x6000, EOIs and reports the count with OUT 0x10 (a/S).
const std::vector<uint8_t> k_pit_guest = {
    0xfa, 0x31, 0xc0, 0x8e, 0xd8, 0x8e, 0xd0, 0xbc, 0x00, 0x70, 0xc7, 0x06, 0x80, 0x00, 0x3a, 0x10, 0xc7, 0x06,
    0x82, 0x00, 0x00, 0x00, 0xb0, 0x11, 0xe6, 0x20, 0xb0, 0x20, 0xe6, 0x21, 0xb0, 0x04, 0xe6, 0x21, 0xb0, 0x01,
    0xe6, 0x21, 0xb0, 0xfe, 0xe6, 0x21, 0xb0, 0x34, 0xe6, 0x43, 0xb0, 0x9c, 0xe6, 0x40, 0xb0, 0x2e, 0xe6, 0x40,
    0xfb, 0xf4, 0xeb, 0xfc, 0xff, 0x06, 0x00, 0x60, 0xb0, 0x20, 0xe6, 0x20, 0xa1, 0x00, 0x60, 0xe7, 0x10, 0xcf};

// The LAPIC moved to 0x10000 by WRMSR IA32_APIC_BASE (reachable from real
// mode), software-enabled, timer periodic at vector 0x30 every 10 ms; the ISR
// counts at 0x6000, writes EOI and reports with OUT 0x11.
const std::vector<uint8_t> k_lapic_guest = {
    0xfa, 0x31, 0xc0, 0x8e, 0xd8, 0x8e, 0xd0, 0xbc, 0x00, 0x70, 0xc7, 0x06, 0xc0, 0x00, 0x58, 0x10, 0xc7, 0x06,
    0xc2, 0x00, 0x00, 0x00, 0x66, 0xb9, 0x1b, 0x00, 0x00, 0x00, 0x66, 0xb8, 0x00, 0x09, 0x01, 0x00, 0x66, 0x31,
    0xd2, 0x0f, 0x30, 0xb8, 0x00, 0x10, 0x8e, 0xc0, 0x26, 0x66, 0xc7, 0x06, 0xf0, 0x00, 0xff, 0x01, 0x00, 0x00,
    0x26, 0x66, 0xc7, 0x06, 0xe0, 0x03, 0x0b, 0x00, 0x00, 0x00, 0x26, 0x66, 0xc7, 0x06, 0x20, 0x03, 0x30, 0x00,
    0x02, 0x00, 0x26, 0x66, 0xc7, 0x06, 0x80, 0x03, 0x80, 0x96, 0x98, 0x00, 0xfb, 0xf4, 0xeb, 0xfc, 0xff, 0x06,
    0x00, 0x60, 0x26, 0x66, 0xc7, 0x06, 0xb0, 0x00, 0x00, 0x00, 0x00, 0x00, 0xa1, 0x00, 0x60, 0xe7, 0x11, 0xcf};

// ---- KVM_CREATE_IRQCHIP / KVM_ENABLE_CAP(KVM_CAP_SPLIT_IRQCHIP) ----

TEST_P(Irqchip, CreateIrqchipOnceAndBeforeVcpus) {
  int vm = create_vm();
  EXPECT_EQ(io(vm, KVM_CREATE_IRQCHIP, 0ul), 0);
  EXPECT_EQ(io(vm, KVM_CREATE_IRQCHIP, 0ul), -EEXIST);
  int vm2 = create_vm();
  create_vcpu(vm2, 0);
  EXPECT_EQ(io(vm2, KVM_CREATE_IRQCHIP, 0ul), -EINVAL);  // kvm->created_vcpus
}

TEST_P(Irqchip, SplitIrqchipRules) {
  int vm = create_vm();
  kvm_enable_cap cap{};
  cap.cap = KVM_CAP_SPLIT_IRQCHIP;
  cap.args[0] = 4097;  // > MAX_NR_RESERVED_IOAPIC_PINS
  EXPECT_EQ(io(vm, KVM_ENABLE_CAP, &cap), -EINVAL);
  cap.args[0] = 24;
  cap.flags = 1;
  EXPECT_EQ(io(vm, KVM_ENABLE_CAP, &cap), -EINVAL);
  cap.flags = 0;
  EXPECT_EQ(io(vm, KVM_ENABLE_CAP, &cap), 0);
  EXPECT_EQ(io(vm, KVM_ENABLE_CAP, &cap), -EEXIST);
  EXPECT_EQ(io(vm, KVM_CREATE_IRQCHIP, 0ul), -EEXIST);
  kvm_irqchip chip{};
  EXPECT_EQ(io(vm, KVM_GET_IRQCHIP, &chip), -ENXIO);  // irqchip_kernel() is false in split mode
  EXPECT_EQ(io(vm, KVM_SET_IRQCHIP, &chip), -ENXIO);
  int vm2 = create_vm();
  create_vcpu(vm2, 0);
  EXPECT_EQ(io(vm2, KVM_ENABLE_CAP, &cap), -EEXIST);  // created_vcpus, same errno
}

// ---- KVM_IRQ_LINE / KVM_IRQ_LINE_STATUS ----

TEST_P(Irqchip, IrqLineStatus) {
  int vm = create_vm();
  kvm_irq_level l{};
  l.irq = 4;
  l.level = 1;
  EXPECT_EQ(io(vm, KVM_IRQ_LINE_STATUS, &l), -ENXIO);
  EXPECT_EQ(io(vm, KVM_IRQ_LINE_STATUS, bad_ptr()), -EFAULT);
  ASSERT_EQ(io(vm, KVM_CREATE_IRQCHIP, 0ul), 0);
  // `status` overlays `irq`: set the GSI before every call.
  auto line = [&](uint32_t gsi, uint32_t level) {
    l.irq = gsi;
    l.level = level;
    EXPECT_EQ(io(vm, KVM_IRQ_LINE_STATUS, &l), 0);
    return l.status;
  };
  // GSI 4: PIC pin 4 (unmasked after reset) and IOAPIC pin 4 (masked).
  EXPECT_EQ(line(4, 1), 1);  // PIC delivered, IOAPIC masked (-1, not counted)
  EXPECT_EQ(line(4, 0), 2);  // lowering: both report 1
  EXPECT_EQ(line(4, 1), 0);  // IRR still set: coalesced
  l.irq = 4;
  EXPECT_EQ(io(vm, KVM_IRQ_LINE, &l), 0);
  kvm_irqchip chip{};
  chip.chip_id = KVM_IRQCHIP_PIC_MASTER;
  ASSERT_EQ(io(vm, KVM_GET_IRQCHIP, &chip), 0);
  EXPECT_EQ(chip.chip.pic.irr & 0x10, 0x10);
  EXPECT_EQ(line(5000, 1), -1);  // no route
  EXPECT_EQ(sys(KVM_CHECK_EXTENSION, KVM_CAP_IRQ_INJECT_STATUS), 1);
  prove("KVM_CAP_IRQ_INJECT_STATUS");
}

// ---- KVM_GET/SET_IRQCHIP ----

TEST_P(Irqchip, GetSetIrqchipRoundTrip) {
  int vm = create_vm();
  kvm_irqchip chip{};
  EXPECT_EQ(io(vm, KVM_GET_IRQCHIP, &chip), -ENXIO);
  EXPECT_EQ(io(vm, KVM_GET_IRQCHIP, bad_ptr()), -EFAULT);
  ASSERT_EQ(io(vm, KVM_CREATE_IRQCHIP, 0ul), 0);
  chip.chip_id = 3;
  EXPECT_EQ(io(vm, KVM_GET_IRQCHIP, &chip), -EINVAL);
  EXPECT_EQ(io(vm, KVM_SET_IRQCHIP, &chip), -EINVAL);
  EXPECT_EQ(io(vm, KVM_SET_IRQCHIP, bad_ptr()), -EFAULT);
  for (uint32_t id : {KVM_IRQCHIP_PIC_MASTER, KVM_IRQCHIP_PIC_SLAVE, KVM_IRQCHIP_IOAPIC}) {
    kvm_irqchip a{};
    a.chip_id = id;
    ASSERT_EQ(io(vm, KVM_GET_IRQCHIP, &a), 0);
    if (id == KVM_IRQCHIP_IOAPIC) {
      EXPECT_EQ(a.chip.ioapic.base_address, 0xfec00000u);
      a.chip.ioapic.redirtbl[5].bits = 0x10000 | 0x8000 | 0x45;  // masked, level, vector 0x45
      a.chip.ioapic.ioregsel = 0x12;
    } else {
      a.chip.pic.imr = 0x5a;
      a.chip.pic.irq_base = 0x70;
    }
    ASSERT_EQ(io(vm, KVM_SET_IRQCHIP, &a), 0);
    kvm_irqchip b{};
    b.chip_id = id;
    ASSERT_EQ(io(vm, KVM_GET_IRQCHIP, &b), 0);
    EXPECT_EQ(std::memcmp(&a, &b, sizeof(a)), 0) << "chip " << id;
  }
}

// ---- KVM_CREATE_PIT2 / KVM_GET/SET_PIT2 / KVM_REINJECT_CONTROL ----

TEST_P(Irqchip, Pit2Rules) {
  int vm = create_vm();
  kvm_pit_state2 ps{};
  kvm_reinject_control rc{};
  EXPECT_EQ(io(vm, KVM_GET_PIT2, &ps), -ENXIO);
  EXPECT_EQ(io(vm, KVM_SET_PIT2, &ps), -ENXIO);
  EXPECT_EQ(io(vm, KVM_REINJECT_CONTROL, &rc), -ENXIO);
  EXPECT_EQ(io(vm, KVM_CREATE_PIT2, bad_ptr()), -EFAULT);
  ASSERT_EQ(io(vm, KVM_CREATE_IRQCHIP, 0ul), 0);
  kvm_pit_config pc{};
  EXPECT_EQ(io(vm, KVM_CREATE_PIT2, &pc), 0);
  EXPECT_EQ(io(vm, KVM_CREATE_PIT2, &pc), -EEXIST);
  EXPECT_EQ(io(vm, KVM_GET_PIT2, bad_ptr()), -EFAULT);
  EXPECT_EQ(io(vm, KVM_SET_PIT2, bad_ptr()), -EFAULT);
  EXPECT_EQ(io(vm, KVM_REINJECT_CONTROL, bad_ptr()), -EFAULT);
  rc.pit_reinject = 1;
  EXPECT_EQ(io(vm, KVM_REINJECT_CONTROL, &rc), 0);
  ASSERT_EQ(io(vm, KVM_GET_PIT2, &ps), 0);
  // Channel 2 programmed as a guest would (mode 0, word access), loaded now.
  ps.channels[2].count = 0x1234;
  ps.channels[2].mode = 0;
  ps.channels[2].rw_mode = 3;
  ps.channels[2].read_state = 3;
  ps.channels[2].write_state = 3;
  ps.channels[2].gate = 1;
  ps.channels[2].count_load_time = ps.channels[0].count_load_time;
  ASSERT_EQ(io(vm, KVM_SET_PIT2, &ps), 0);
  kvm_pit_state2 got{}, back{};
  ASSERT_EQ(io(vm, KVM_GET_PIT2, &got), 0);
  EXPECT_EQ(got.channels[2].count, 0x1234u);
  EXPECT_EQ(got.channels[2].rw_mode, 3);
  ASSERT_EQ(io(vm, KVM_SET_PIT2, &got), 0);  // GET, SET, GET: equal
  ASSERT_EQ(io(vm, KVM_GET_PIT2, &back), 0);
  if (on_linux()) {  // Linux reloads each count at SET time (pit_load_count): only that moves
    for (int i = 0; i < 3; ++i) back.channels[i].count_load_time = got.channels[i].count_load_time;
  }
  EXPECT_EQ(std::memcmp(&got, &back, sizeof(got)), 0);
  EXPECT_EQ(sys(KVM_CHECK_EXTENSION, KVM_CAP_PIT2), 1);
  EXPECT_EQ(sys(KVM_CHECK_EXTENSION, KVM_CAP_PIT_STATE2), 1);
  prove("KVM_CAP_PIT2");
  prove("KVM_CAP_PIT_STATE2");
}

TEST_P(Irqchip, CreatePit2NeedsIrqchipHere) {
  ANYKVM_ONLY("Linux 6.1 creates a PIT without an irqchip; anykvm's lives in the irqchip");
  int vm = create_vm();
  kvm_pit_config pc{};
  EXPECT_EQ(io(vm, KVM_CREATE_PIT2, &pc), -ENXIO);
}

// ---- KVM_SET_GSI_ROUTING ----

TEST_P(Irqchip, GsiRoutingRules) {
  int vm = create_vm();
  ASSERT_EQ(io(vm, KVM_CREATE_IRQCHIP, 0ul), 0);
  struct {
    uint32_t nr, flags;
    kvm_irq_routing_entry e[3];
  } r{};
  r.nr = 2;
  r.e[0].gsi = 0;
  r.e[0].type = KVM_IRQ_ROUTING_IRQCHIP;
  r.e[0].u.irqchip.irqchip = KVM_IRQCHIP_PIC_MASTER;
  r.e[0].u.irqchip.pin = 0;
  r.e[1].gsi = 0;
  r.e[1].type = KVM_IRQ_ROUTING_IRQCHIP;
  r.e[1].u.irqchip.irqchip = KVM_IRQCHIP_IOAPIC;
  r.e[1].u.irqchip.pin = 2;
  EXPECT_EQ(io(vm, k_SET_GSI_ROUTING, &r), 0);
  r.e[1].u.irqchip.irqchip = KVM_IRQCHIP_PIC_MASTER;  // the same chip twice for one GSI
  EXPECT_EQ(io(vm, k_SET_GSI_ROUTING, &r), -EINVAL);
  r.e[1].u.irqchip.irqchip = KVM_IRQCHIP_PIC_SLAVE;
  r.e[1].u.irqchip.pin = 8;  // PIC pins are 0-7
  EXPECT_EQ(io(vm, k_SET_GSI_ROUTING, &r), -EINVAL);
  r.e[1].u.irqchip.irqchip = KVM_IRQCHIP_IOAPIC;
  r.e[1].u.irqchip.pin = 24;
  EXPECT_EQ(io(vm, k_SET_GSI_ROUTING, &r), -EINVAL);
  r.e[1].u.irqchip.pin = 2;
  r.e[1].gsi = 4096;
  EXPECT_EQ(io(vm, k_SET_GSI_ROUTING, &r), -EINVAL);
  r.e[1].gsi = 30;
  r.e[1].type = KVM_IRQ_ROUTING_MSI;
  r.e[1].u.msi.address_lo = 0xfee00000;
  r.e[1].u.msi.data = 0x41;
  EXPECT_EQ(io(vm, k_SET_GSI_ROUTING, &r), 0);
  r.nr = 3;
  r.e[2] = r.e[1];  // a second route for an MSI GSI
  r.e[2].type = KVM_IRQ_ROUTING_IRQCHIP;
  r.e[2].u.irqchip.irqchip = KVM_IRQCHIP_IOAPIC;
  r.e[2].u.irqchip.pin = 3;
  EXPECT_EQ(io(vm, k_SET_GSI_ROUTING, &r), -EINVAL);
  r.e[2].type = 99;
  r.e[2].gsi = 31;
  EXPECT_EQ(io(vm, k_SET_GSI_ROUTING, &r), -EINVAL);
  r.nr = 4097;
  EXPECT_EQ(io(vm, k_SET_GSI_ROUTING, &r), -EINVAL);
  r.nr = 0;
  r.flags = 1;
  EXPECT_EQ(io(vm, k_SET_GSI_ROUTING, &r), -EINVAL);
  r.flags = 0;
  EXPECT_EQ(io(vm, k_SET_GSI_ROUTING, &r), 0);  // no routes at all
  kvm_irq_level l{};
  l.irq = 4;
  l.level = 1;
  ASSERT_EQ(io(vm, KVM_IRQ_LINE_STATUS, &l), 0);
  EXPECT_EQ(l.status, -1);  // GSI 4 goes nowhere now
}

TEST_P(Irqchip, SplitModeRoutesAreMsiOnly) {
  int vm = create_vm();
  kvm_enable_cap cap{};
  cap.cap = KVM_CAP_SPLIT_IRQCHIP;
  cap.args[0] = 24;
  ASSERT_EQ(io(vm, KVM_ENABLE_CAP, &cap), 0);
  RoutingBuf r{};
  r.nr = 1;
  r.e[0].gsi = 4;
  r.e[0].type = KVM_IRQ_ROUTING_IRQCHIP;
  r.e[0].u.irqchip.irqchip = KVM_IRQCHIP_IOAPIC;
  r.e[0].u.irqchip.pin = 4;
  EXPECT_EQ(io(vm, k_SET_GSI_ROUTING, &r), -EINVAL);
  r.e[0].type = KVM_IRQ_ROUTING_MSI;
  r.e[0].u.msi.address_lo = 0xfee00000;
  r.e[0].u.msi.data = 0x51;
  EXPECT_EQ(io(vm, k_SET_GSI_ROUTING, &r), 0);
  int vcpu = create_vcpu(vm, 0);
  kvm_irq_level l{};
  l.irq = 4;
  l.level = 1;
  ASSERT_EQ(io(vm, KVM_IRQ_LINE_STATUS, &l), 0);
  EXPECT_EQ(l.status, 0);  // software-disabled LAPIC: not accepted
  l.irq = 4;
  l.level = 0;
  ASSERT_EQ(io(vm, KVM_IRQ_LINE_STATUS, &l), 0);
  {
    kvm_lapic_state en{};
    ASSERT_EQ(io(vcpu, KVM_GET_LAPIC, &en), 0);
    uint32_t svr = 0x1ff;  // software-enabled: a disabled LAPIC accepts nothing
    std::memcpy(en.regs + 0xf0, &svr, 4);
    ASSERT_EQ(io(vcpu, KVM_SET_LAPIC, &en), 0);
  }
  l.irq = 4;
  l.level = 1;
  ASSERT_EQ(io(vm, KVM_IRQ_LINE_STATUS, &l), 0);
  EXPECT_EQ(l.status, 1);  // delivered to the one LAPIC
  kvm_lapic_state ls{};
  ASSERT_EQ(io(vcpu, KVM_GET_LAPIC, &ls), 0);
  uint32_t irr;
  std::memcpy(&irr, ls.regs + 0x200 + 0x10 * (0x51 / 32), 4);
  EXPECT_TRUE(irr & (1u << (0x51 % 32)));
  kvm_interrupt irq{0x20};
  EXPECT_EQ(io(vcpu, KVM_INTERRUPT, &irq), 0);  // the PIC is in user space
  EXPECT_EQ(io(vcpu, KVM_INTERRUPT, &irq), -EEXIST);
}

// ---- KVM_SIGNAL_MSI ----

TEST_P(Irqchip, SignalMsi) {
  int vm = create_vm();
  kvm_msi m{};
  m.address_lo = 0xfee00000;
  m.data = 0x62;
  EXPECT_EQ(io(vm, KVM_SIGNAL_MSI, &m), -EINVAL);  // no irqchip
  EXPECT_EQ(io(vm, KVM_SIGNAL_MSI, bad_ptr()), -EFAULT);
  ASSERT_EQ(io(vm, KVM_CREATE_IRQCHIP, 0ul), 0);
  int vcpu = create_vcpu(vm, 0);
  {
    kvm_lapic_state en{};
    ASSERT_EQ(io(vcpu, KVM_GET_LAPIC, &en), 0);
    uint32_t svr = 0x1ff;  // software-enabled: a disabled LAPIC accepts nothing
    std::memcpy(en.regs + 0xf0, &svr, 4);
    ASSERT_EQ(io(vcpu, KVM_SET_LAPIC, &en), 0);
  }
  m.flags = 2;
  EXPECT_EQ(io(vm, KVM_SIGNAL_MSI, &m), -EINVAL);
  m.flags = 0;
  EXPECT_EQ(io(vm, KVM_SIGNAL_MSI, &m), 1);
  EXPECT_EQ(io(vm, KVM_SIGNAL_MSI, &m), 1);  // already in IRR: still 1 (__apic_accept_irq)
  m.address_lo = 0xfee00000 | (5 << 12);     // APIC ID 5: nobody
  EXPECT_EQ(io(vm, KVM_SIGNAL_MSI, &m), 0);  // kvm_irq_delivery_to_apic_fast: no destination
  kvm_lapic_state ls{};
  ASSERT_EQ(io(vcpu, KVM_GET_LAPIC, &ls), 0);
  uint32_t irr;
  std::memcpy(&irr, ls.regs + 0x200 + 0x10 * (0x62 / 32), 4);
  EXPECT_TRUE(irr & (1u << (0x62 % 32)));
  EXPECT_EQ(sys(KVM_CHECK_EXTENSION, KVM_CAP_SIGNAL_MSI), 1);
  prove("KVM_CAP_SIGNAL_MSI");
}

// ---- KVM_GET/SET_LAPIC, KVM_TPR_ACCESS_REPORTING, KVM_SET_VAPIC_ADDR ----

TEST_P(Irqchip, LapicRoundTrip) {
  int vm = create_vm();
  int plain = create_vcpu(vm, 0);
  kvm_lapic_state ls{};
  EXPECT_EQ(io(plain, KVM_GET_LAPIC, &ls), -EINVAL);  // no in-kernel LAPIC
  EXPECT_EQ(io(plain, KVM_SET_LAPIC, &ls), -EINVAL);
  kvm_vapic_addr va{};
  EXPECT_EQ(io(plain, KVM_SET_VAPIC_ADDR, &va), -EINVAL);
  int vm2 = create_vm();
  ASSERT_EQ(io(vm2, KVM_CREATE_IRQCHIP, 0ul), 0);
  int vcpu = create_vcpu(vm2, 0);
  EXPECT_EQ(io(vcpu, KVM_GET_LAPIC, bad_ptr()), -EFAULT);
  EXPECT_EQ(io(vcpu, KVM_SET_LAPIC, bad_ptr()), -EFAULT);
  EXPECT_EQ(io(vcpu, KVM_SET_VAPIC_ADDR, bad_ptr()), -EFAULT);
  EXPECT_EQ(io(vcpu, KVM_SET_VAPIC_ADDR, &va), 0);
  ASSERT_EQ(io(vcpu, KVM_GET_LAPIC, &ls), 0);
  uint32_t version;
  std::memcpy(&version, ls.regs + 0x30, 4);
  EXPECT_EQ(version & 0xff, 0x14u);  // KVM's APIC version
  uint32_t tpr = 0x50, svr = 0x1ff, lvt0 = 0x700;
  std::memcpy(ls.regs + 0x80, &tpr, 4);
  std::memcpy(ls.regs + 0xf0, &svr, 4);
  std::memcpy(ls.regs + 0x350, &lvt0, 4);
  ASSERT_EQ(io(vcpu, KVM_SET_LAPIC, &ls), 0);
  kvm_lapic_state got{}, back{};
  ASSERT_EQ(io(vcpu, KVM_GET_LAPIC, &got), 0);
  EXPECT_EQ(std::memcmp(got.regs + 0x80, &tpr, 4), 0);
  uint32_t ppr;
  std::memcpy(&ppr, got.regs + 0xa0, 4);
  EXPECT_EQ(ppr, 0x50u);  // PPR follows the TPR
  ASSERT_EQ(io(vcpu, KVM_SET_LAPIC, &got), 0);  // GET, SET, GET: equal
  ASSERT_EQ(io(vcpu, KVM_GET_LAPIC, &back), 0);
  EXPECT_EQ(std::memcmp(got.regs, back.regs, 0x400), 0);
  kvm_sregs s;
  ASSERT_EQ(io(vcpu, KVM_GET_SREGS, &s), 0);
  EXPECT_EQ(s.cr8, 5u);  // TPR >> 4
  EXPECT_EQ(s.apic_base, 0xfee00900u);
  kvm_tpr_access_ctl t{};
  t.flags = 1;
  EXPECT_EQ(io(vcpu, KVM_TPR_ACCESS_REPORTING, &t), -EINVAL);
  t.flags = 0;
  EXPECT_EQ(io(vcpu, KVM_TPR_ACCESS_REPORTING, &t), 0);
  EXPECT_EQ(io(vcpu, KVM_TPR_ACCESS_REPORTING, bad_ptr()), -EFAULT);
  // The APIC base MSR is the LAPIC's.
  MsrsBuf msrs{};
  msrs.nmsrs = 1;
  msrs.e[0].index = 0x1b;
  msrs.e[0].data = 0xfee00800;  // not the BSP any more
  EXPECT_EQ(io(vcpu, k_SET_MSRS, &msrs), 1);
  msrs.e[0].data = 0;
  EXPECT_EQ(io(vcpu, k_GET_MSRS, &msrs), 1);
  EXPECT_EQ(msrs.e[0].data, 0xfee00800u);
}

// ---- KVM_IOEVENTFD ----

TEST_P(Irqchip, IoeventfdRules) {
  int vm = create_vm();
  ASSERT_EQ(io(vm, KVM_CREATE_IRQCHIP, 0ul), 0);
  int efd[7];
  kvm_ioeventfd a{};
  a.len = 2;
  a.flags = KVM_IOEVENTFD_FLAG_PIO | KVM_IOEVENTFD_FLAG_DATAMATCH;
  // QEMU's kvm_check_many_ioeventfds probe.
  for (int i = 0; i < 7; ++i) {
    efd[i] = eventfd(0, EFD_CLOEXEC);
    a.fd = efd[i];
    a.datamatch = i;
    EXPECT_EQ(io(vm, KVM_IOEVENTFD, &a), 0);
  }
  a.datamatch = 3;
  a.fd = efd[0];
  EXPECT_EQ(io(vm, KVM_IOEVENTFD, &a), -EEXIST);
  for (int i = 6; i >= 0; --i) {
    a.fd = efd[i];
    a.datamatch = i;
    a.flags = KVM_IOEVENTFD_FLAG_PIO | KVM_IOEVENTFD_FLAG_DATAMATCH | KVM_IOEVENTFD_FLAG_DEASSIGN;
    EXPECT_EQ(io(vm, KVM_IOEVENTFD, &a), 0);
  }
  EXPECT_EQ(io(vm, KVM_IOEVENTFD, &a), -ENOENT);
  a.flags = KVM_IOEVENTFD_FLAG_PIO;
  a.len = 3;
  EXPECT_EQ(io(vm, KVM_IOEVENTFD, &a), -EINVAL);
  a.len = 0;
  a.flags = KVM_IOEVENTFD_FLAG_DATAMATCH;
  EXPECT_EQ(io(vm, KVM_IOEVENTFD, &a), -EINVAL);
  a.flags = 1u << 5;
  a.len = 4;
  EXPECT_EQ(io(vm, KVM_IOEVENTFD, &a), -EINVAL);
  a.flags = 0;
  a.fd = 1000;  // not open
  EXPECT_EQ(io(vm, KVM_IOEVENTFD, &a), -EBADF);
  a.fd = vm;  // not an eventfd
  if (!on_linux()) {
    EXPECT_EQ(io(vm, KVM_IOEVENTFD, &a), -EINVAL);
  }
  EXPECT_EQ(io(vm, KVM_IOEVENTFD, bad_ptr()), -EFAULT);
  for (int fd : efd) ::close(fd);
}

TEST_P(Irqchip, IoeventfdTakesGuestWriteWithoutExit) {
  // out 0x99, al (al = 7) twice with different data, then out 0x98: only the
  // last reaches user space.
  const std::vector<uint8_t> code = {0xb0, 0x07, 0xe6, 0x99, 0xb0, 0x08, 0xe6, 0x99, 0xe6, 0x98, 0xf4};
  IrqGuest g = irq_guest(code, false, false);
  int efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  kvm_ioeventfd a{};
  a.addr = 0x99;
  a.len = 1;
  a.fd = efd;
  a.datamatch = 7;
  a.flags = KVM_IOEVENTFD_FLAG_PIO | KVM_IOEVENTFD_FLAG_DATAMATCH;
  ASSERT_EQ(io(g.vm, KVM_IOEVENTFD, &a), 0);
  ASSERT_EQ(io(g.vcpu, KVM_RUN, 0ul), 0);
  EXPECT_EQ(g.run->exit_reason, uint32_t(KVM_EXIT_IO));
  EXPECT_EQ(g.run->io.port, 0x99);  // data 8 did not match
  ASSERT_EQ(io(g.vcpu, KVM_RUN, 0ul), 0);
  EXPECT_EQ(g.run->io.port, 0x98);
  uint64_t n = 0;
  EXPECT_EQ(read(efd, &n, 8), 8);
  EXPECT_EQ(n, 1u);
  ::close(efd);
}

// ---- KVM_IRQFD ----

TEST_P(Irqchip, IrqfdRulesAndInjection) {
  int vm = create_vm();
  int efd = eventfd(0, EFD_CLOEXEC), rfd = eventfd(0, EFD_CLOEXEC);
  kvm_irqfd f{};
  f.fd = efd;
  f.gsi = 5;
  EXPECT_EQ(io(vm, KVM_IRQFD, &f), -EINVAL);  // no irqchip
  EXPECT_EQ(io(vm, KVM_IRQFD, bad_ptr()), -EFAULT);
  ASSERT_EQ(io(vm, KVM_CREATE_IRQCHIP, 0ul), 0);
  f.flags = 4;
  EXPECT_EQ(io(vm, KVM_IRQFD, &f), -EINVAL);
  f.flags = 0;
  f.fd = 1000;
  EXPECT_EQ(io(vm, KVM_IRQFD, &f), -EBADF);
  f.fd = efd;
  EXPECT_EQ(io(vm, KVM_IRQFD, &f), 0);
  EXPECT_EQ(io(vm, KVM_IRQFD, &f), -EBUSY);
  uint64_t one = 1;
  ASSERT_EQ(write(efd, &one, 8), 8);
  // The worker injects asynchronously: wait (bounded) for PIC IRR bit 5.
  kvm_irqchip chip{};
  chip.chip_id = KVM_IRQCHIP_PIC_MASTER;
  for (int i = 0; i < 2000; ++i) {
    ASSERT_EQ(io(vm, KVM_GET_IRQCHIP, &chip), 0);
    if (chip.chip.pic.irr & 0x20) break;
    usleep(1000);
  }
  EXPECT_EQ(chip.chip.pic.irr & 0x20, 0x20);
  f.flags = KVM_IRQFD_FLAG_DEASSIGN;
  EXPECT_EQ(io(vm, KVM_IRQFD, &f), 0);
  EXPECT_EQ(io(vm, KVM_IRQFD, &f), 0);  // nothing left: still 0
  f.flags = KVM_IRQFD_FLAG_RESAMPLE;
  f.resamplefd = rfd;
  f.gsi = 10;
  EXPECT_EQ(io(vm, KVM_IRQFD, &f), 0);
  ::close(efd);
  ::close(rfd);
  EXPECT_EQ(sys(KVM_CHECK_EXTENSION, KVM_CAP_IRQFD), 1);
  prove("KVM_CAP_IRQFD");
}

TEST_P(Irqchip, IrqfdResampleNeedsFullIrqchip) {
  int vm = create_vm();
  kvm_enable_cap cap{};
  cap.cap = KVM_CAP_SPLIT_IRQCHIP;
  cap.args[0] = 24;
  ASSERT_EQ(io(vm, KVM_ENABLE_CAP, &cap), 0);
  int efd = eventfd(0, EFD_CLOEXEC), rfd = eventfd(0, EFD_CLOEXEC);
  kvm_irqfd f{};
  f.fd = efd;
  f.gsi = 5;
  f.flags = KVM_IRQFD_FLAG_RESAMPLE;
  f.resamplefd = rfd;
  EXPECT_EQ(io(vm, KVM_IRQFD, &f), -EINVAL);
  f.flags = 0;
  EXPECT_EQ(io(vm, KVM_IRQFD, &f), 0);
  ::close(efd);
  ::close(rfd);
}

// ---- guests: HLT sleeps in KVM_RUN until a timer interrupt ----

TEST_P(Irqchip, PitThroughPicWakesHlt) {
  IrqGuest g = irq_guest(k_pit_guest);
  for (uint16_t want = 1; want <= 3; ++want) {
    uint16_t port = 0, value = 0;
    ASSERT_EQ(run_to_out(g, port, value), 0) << "tick " << want;
    ASSERT_EQ(g.run->exit_reason, uint32_t(KVM_EXIT_IO));
    EXPECT_EQ(port, 0x10);
    EXPECT_EQ(value, want);
  }
  EXPECT_EQ(g.run->ready_for_interrupt_injection, 1);  // pic_in_kernel
  EXPECT_EQ(sys(KVM_CHECK_EXTENSION, KVM_CAP_IRQCHIP), 1);
  prove("KVM_CAP_IRQCHIP");
}

// PIT every 10 ms through the PIC at vector 0x20. The guest leaves KVM_RUN
// (OUT 0x10) with IF=0 while user space sleeps 200 ms, so at least 20 ticks
// fall due while the first is still unacknowledged; then it opens a short
// IF=1 window (4096 LOOPs) and reports its ISR's count with OUT 0x11.
const std::vector<uint8_t> k_pit_backlog_guest = {
    0xfa, 0x31, 0xc0, 0x8e, 0xd8, 0x8e, 0xd0, 0xbc, 0x00, 0x70, 0xc7, 0x06, 0x80, 0x00, 0x4c, 0x10, 0xc7,
    0x06, 0x82, 0x00, 0x00, 0x00, 0xc7, 0x06, 0x00, 0x60, 0x00, 0x00, 0xb0, 0x11, 0xe6, 0x20, 0xb0, 0x20,
    0xe6, 0x21, 0xb0, 0x04, 0xe6, 0x21, 0xb0, 0x01, 0xe6, 0x21, 0xb0, 0xfe, 0xe6, 0x21, 0xb0, 0x34, 0xe6,
    0x43, 0xb0, 0x9c, 0xe6, 0x40, 0xb0, 0x2e, 0xe6, 0x40, 0xe6, 0x10, 0xfb, 0xb9, 0x00, 0x10, 0xe2, 0xfe,
    0xfa, 0xa1, 0x00, 0x60, 0xe7, 0x11, 0xeb, 0xfe, 0x50, 0xff, 0x06, 0x00, 0x60, 0xb0, 0x20, 0xe6, 0x20,
    0x58, 0xcf};

TEST_P(Irqchip, PitReinjectionDeliversLostTicksOnAck) {
  ANYKVM_ONLY("Linux reinjects each lost tick from a kernel thread after the ack, not within this short window");
  for (bool reinject : {true, false}) {
    SCOPED_TRACE(reinject ? "reinject on (default)" : "KVM_REINJECT_CONTROL off");
    IrqGuest g = irq_guest(k_pit_backlog_guest);
    if (!reinject) {
      kvm_reinject_control rc{};
      ASSERT_EQ(io(g.vm, KVM_REINJECT_CONTROL, &rc), 0);
    }
    uint16_t port = 0, value = 0;
    ASSERT_EQ(run_to_out(g, port, value), 0);
    ASSERT_EQ(port, 0x10);
    usleep(200 * 1000);  // >= 20 PIT periods with the guest's IF = 0
    ASSERT_EQ(run_to_out(g, port, value), 0);
    ASSERT_EQ(port, 0x11);
    if (reinject)
      EXPECT_GE(value, 20);  // every lost tick, one per EOI
    else  // the lost ticks coalesced into one (bound: far from the 20 above even
          // if the host preempts the guest's short STI window)
      EXPECT_LT(value, 20);
  }
}

// The same backlog through the IOAPIC: PIC masked, LAPIC software-enabled
// (GS base 0xfee00000), IOAPIC pin 0 (FS base 0xfec00000; KVM's default
// routes send GSI 0 to pin 0) -> vector 0x30, edge; the ISR EOIs the LAPIC.
// That edge EOI is the PIT's ack.
const std::vector<uint8_t> k_pit_backlog_ioapic_guest = {
    0xfa, 0x31, 0xc0, 0x8e, 0xd8, 0x8e, 0xd0, 0xbc, 0x00, 0x70, 0xc7, 0x06, 0xc0, 0x00, 0x6e, 0x10, 0xc7, 0x06,
    0xc2, 0x00, 0x00, 0x00, 0xc7, 0x06, 0x00, 0x60, 0x00, 0x00, 0xb0, 0xff, 0xe6, 0x21, 0x65, 0x66, 0xc7, 0x06,
    0xf0, 0x00, 0xff, 0x01, 0x00, 0x00, 0x64, 0x66, 0xc7, 0x06, 0x00, 0x00, 0x10, 0x00, 0x00, 0x00, 0x64, 0x66,
    0xc7, 0x06, 0x10, 0x00, 0x30, 0x00, 0x00, 0x00, 0x64, 0x66, 0xc7, 0x06, 0x00, 0x00, 0x11, 0x00, 0x00, 0x00,
    0x64, 0x66, 0xc7, 0x06, 0x10, 0x00, 0x00, 0x00, 0x00, 0x00, 0xb0, 0x34, 0xe6, 0x43, 0xb0, 0x9c, 0xe6, 0x40,
    0xb0, 0x2e, 0xe6, 0x40, 0xe6, 0x10, 0xfb, 0xb9, 0x00, 0x10, 0xe2, 0xfe, 0xfa, 0xa1, 0x00, 0x60, 0xe7, 0x11,
    0xeb, 0xfe, 0xff, 0x06, 0x00, 0x60, 0x65, 0x66, 0xc7, 0x06, 0xb0, 0x00, 0x00, 0x00, 0x00, 0x00, 0xcf};

TEST_P(Irqchip, PitReinjectionThroughIoapicEdgeEoi) {
  ANYKVM_ONLY("Linux reinjects each lost tick from a kernel thread after the ack, not within this short window");
  IrqGuest g = irq_guest(k_pit_backlog_ioapic_guest);
  kvm_sregs s;
  ASSERT_EQ(io(g.vcpu, KVM_GET_SREGS, &s), 0);
  s.fs.base = 0xfec00000;
  s.gs.base = 0xfee00000;
  ASSERT_EQ(io(g.vcpu, KVM_SET_SREGS, &s), 0);
  uint16_t port = 0, value = 0;
  ASSERT_EQ(run_to_out(g, port, value), 0);
  ASSERT_EQ(port, 0x10);
  usleep(200 * 1000);  // >= 20 PIT periods with the guest's IF = 0
  ASSERT_EQ(run_to_out(g, port, value), 0);
  ASSERT_EQ(port, 0x11);
  EXPECT_GE(value, 20);
}

// PIT channel 0 every 1 ms through the master PIC; the ISR counts ticks at
// 0x6000 and EOIs; only the 100th tick reports the count with OUT 0x10, so the
// guest sits in sti; hlt in between without leaving KVM_RUN.
const std::vector<uint8_t> k_pit_quiet_guest = {
    0xfa, 0x31, 0xc0, 0x8e, 0xd8, 0x8e, 0xd0, 0xbc, 0x00, 0x70, 0xc7, 0x06, 0x80, 0x00, 0x3a, 0x10, 0xc7, 0x06,
    0x82, 0x00, 0x00, 0x00, 0xb0, 0x11, 0xe6, 0x20, 0xb0, 0x20, 0xe6, 0x21, 0xb0, 0x04, 0xe6, 0x21, 0xb0, 0x01,
    0xe6, 0x21, 0xb0, 0xfe, 0xe6, 0x21, 0xb0, 0x34, 0xe6, 0x43, 0xb0, 0xa9, 0xe6, 0x40, 0xb0, 0x04, 0xe6, 0x40,
    0xfb, 0xf4, 0xeb, 0xfc,
    // ISR (0x103a): inc word [0x6000]; EOI; cmp word [0x6000], 100; jb +5; mov ax, [0x6000]; out 0x10, ax; iret
    0xff, 0x06, 0x00, 0x60, 0xb0, 0x20, 0xe6, 0x20, 0x83, 0x3e, 0x00, 0x60, 0x64, 0x72, 0x05, 0xa1, 0x00, 0x60,
    0xe7, 0x10, 0xcf};

// machine::Irqchip::k_worker_name: the irqchip worker thread's name.
const char* const k_worker = "anykvm-irqchip";

// How often a thread of this process named `name` has been woken (voluntary
// context switches), or -1 if there is none.
long thread_wakeups(const std::string& name) {
  DIR* d = opendir("/proc/self/task");
  if (!d) return -1;
  long n = -1;
  while (dirent* e = readdir(d)) {
    if (e->d_name[0] == '.') continue;
    std::string dir = std::string("/proc/self/task/") + e->d_name;
    std::ifstream comm(dir + "/comm");
    std::string c;
    std::getline(comm, c);
    if (c != name) continue;
    std::ifstream st(dir + "/status");
    for (std::string line; std::getline(st, line);)
      if (line.rfind("voluntary_ctxt_switches:", 0) == 0) n = std::stol(line.substr(24));
  }
  closedir(d);
  return n;
}

// An idle guest's tick costs one host thread wake: while the vCPU is halted in
// KVM_RUN it keeps the VM's timers itself, so the irqchip's worker thread
// (which keeps them while guest code runs) sleeps through the guest's 100 PIT
// ticks instead of waking for each and then waking the vCPU.
TEST_P(Irqchip, HaltedVcpuTakesItsTicksWithoutTheWorker) {
  ANYKVM_ONLY("anykvm's own worker thread");
  IrqGuest g = irq_guest(k_pit_quiet_guest);
  const long before = thread_wakeups(k_worker);
  ASSERT_GE(before, 0) << "no irqchip worker thread named " << k_worker;
  uint16_t port = 0, value = 0;
  ASSERT_EQ(run_to_out(g, port, value), 0);
  ASSERT_EQ(port, 0x10);
  EXPECT_EQ(value, 100);
  const long woken = thread_wakeups(k_worker) - before;
  // Each wake while the vCPU ran (between two halts) is legitimate; a worker
  // that kept the timers would wake at least once per tick.
  EXPECT_LT(woken, 50) << "the worker woke " << woken << " times for 100 ticks";
}

TEST_P(Irqchip, LapicTimerWakesHlt) {
  ANYKVM_ONLY("on the 6.18 host's KVM this real-mode guest with a relocated APIC base never gets its tick (not investigated)");
  IrqGuest g = irq_guest(k_lapic_guest, false, false);
  for (uint16_t want = 1; want <= 3; ++want) {
    uint16_t port = 0, value = 0;
    ASSERT_EQ(run_to_out(g, port, value), 0) << "tick " << want;
    ASSERT_EQ(g.run->exit_reason, uint32_t(KVM_EXIT_IO));
    EXPECT_EQ(port, 0x11);
    EXPECT_EQ(value, want);
  }
  EXPECT_EQ(g.run->apic_base, 0x10900u);
}

TEST_P(Irqchip, LapicTimerInSplitMode) {
  ANYKVM_ONLY("same guest as LapicTimerWakesHlt");
  IrqGuest g = irq_guest(k_lapic_guest, true);
  uint16_t port = 0, value = 0;
  ASSERT_EQ(run_to_out(g, port, value), 0);
  EXPECT_EQ(port, 0x11);
  EXPECT_EQ(value, 1);
  EXPECT_EQ(sys(KVM_CHECK_EXTENSION, KVM_CAP_SPLIT_IRQCHIP), 1);
  prove("KVM_CAP_SPLIT_IRQCHIP");
}

// Split mode: a level-triggered MSI route; the guest's EOI of its vector is
// KVM_EXIT_IOAPIC_EOI (the IOAPIC is in user space), then the ISR goes on.
TEST_P(Irqchip, SplitModeLevelEoiExits) {
  ANYKVM_ONLY("same relocated-APIC real-mode guest as LapicTimerWakesHlt");
  // LAPIC at 0x10000, enabled; OUT 0x12 when ready; sti; hlt. The ISR of
  // vector 0x40 writes EOI, then OUTs to 0x11.
  const std::vector<uint8_t> code = {
      0xfa, 0x31, 0xc0, 0x8e, 0xd8, 0x8e, 0xd0, 0xbc, 0x00, 0x70, 0xc7, 0x06, 0x00, 0x01, 0x3c, 0x10, 0xc7, 0x06,
      0x02, 0x01, 0x00, 0x00, 0x66, 0xb9, 0x1b, 0x00, 0x00, 0x00, 0x66, 0xb8, 0x00, 0x09, 0x01, 0x00, 0x66, 0x31,
      0xd2, 0x0f, 0x30, 0xb8, 0x00, 0x10, 0x8e, 0xc0, 0x26, 0x66, 0xc7, 0x06, 0xf0, 0x00, 0xff, 0x01, 0x00, 0x00,
      0xe6, 0x12, 0xfb, 0xf4, 0xeb, 0xfc, 0x26, 0x66, 0xc7, 0x06, 0xb0, 0x00, 0x00, 0x00, 0x00, 0x00, 0xe7, 0x11,
      0xcf};
  IrqGuest g = irq_guest(code, true);
  uint16_t port = 0, value = 0;
  ASSERT_EQ(run_to_out(g, port, value), 0);
  ASSERT_EQ(port, 0x12);
  RoutingBuf r{};
  r.nr = 1;
  r.e[0].gsi = 5;
  r.e[0].type = KVM_IRQ_ROUTING_MSI;
  r.e[0].u.msi.address_lo = 0xfee00000;
  r.e[0].u.msi.data = 0x8000 | 0x4000 | 0x40;  // level, assert, vector 0x40
  ASSERT_EQ(io(g.vm, k_SET_GSI_ROUTING, &r), 0);
  kvm_irq_level l{};
  l.irq = 5;
  l.level = 1;
  ASSERT_EQ(io(g.vm, KVM_IRQ_LINE_STATUS, &l), 0);
  EXPECT_EQ(l.status, 1);
  long rc;
  do {
    rc = io(g.vcpu, KVM_RUN, 0ul);
  } while (rc == -EINTR);
  ASSERT_EQ(rc, 0);
  ASSERT_EQ(g.run->exit_reason, uint32_t(KVM_EXIT_IOAPIC_EOI));
  EXPECT_EQ(g.run->eoi.vector, 0x40);
  ASSERT_EQ(run_to_out(g, port, value), 0);  // the ISR carries on after the EOI
  EXPECT_EQ(port, 0x11);
  prove("KVM_CAP_SPLIT_IRQCHIP");
}

void on_sigusr1(int) {}

TEST_P(Irqchip, KickEndsHltWithEintr) {
  // sti; hlt with nothing programmed: only a kick ends the sleep.
  const std::vector<uint8_t> code = {0xfb, 0xf4, 0xeb, 0xfc};
  IrqGuest g = irq_guest(code);
  struct sigaction sa {};
  sa.sa_handler = on_sigusr1;
  struct sigaction old {};
  sigaction(SIGUSR1, &sa, &old);
  pthread_t self = pthread_self();
  kvm_run* run = g.run;
  std::thread kicker([self, run] {
    usleep(50 * 1000);
    run->immediate_exit = 1;
    pthread_kill(self, SIGUSR1);
  });
  long r = io(g.vcpu, KVM_RUN, 0ul);
  kicker.join();
  sigaction(SIGUSR1, &old, nullptr);
  EXPECT_EQ(r, -EINTR);
  EXPECT_EQ(g.run->exit_reason, uint32_t(KVM_EXIT_INTR));
  kvm_mp_state mp{};
  ASSERT_EQ(io(g.vcpu, KVM_GET_MP_STATE, &mp), 0);
  EXPECT_EQ(mp.mp_state, uint32_t(KVM_MP_STATE_HALTED));
  g.run->immediate_exit = 0;
  EXPECT_EQ(io(g.vcpu, KVM_SET_MP_STATE, &mp), 0);  // any state with an in-kernel LAPIC
}

// ---- save mid-activity, restore into a fresh VM, carry on ----

TEST_P(Irqchip, SaveRestoreMidActivityCarriesOn) {
  IrqGuest a = irq_guest(k_pit_guest);
  uint16_t port = 0, value = 0;
  for (int i = 0; i < 2; ++i) ASSERT_EQ(run_to_out(a, port, value), 0);
  ASSERT_EQ(value, 2);
  // Save everything a migration moves.
  kvm_regs regs;
  kvm_sregs sregs;
  kvm_lapic_state lapic;
  kvm_pit_state2 pit;
  kvm_irqchip chips[3];
  kvm_vcpu_events ev;
  ASSERT_EQ(io(a.vcpu, KVM_GET_REGS, &regs), 0);
  ASSERT_EQ(io(a.vcpu, KVM_GET_SREGS, &sregs), 0);
  ASSERT_EQ(io(a.vcpu, KVM_GET_LAPIC, &lapic), 0);
  ASSERT_EQ(io(a.vcpu, KVM_GET_VCPU_EVENTS, &ev), 0);
  ASSERT_EQ(io(a.vm, KVM_GET_PIT2, &pit), 0);
  for (uint32_t i = 0; i < 3; ++i) {
    chips[i] = kvm_irqchip{};
    chips[i].chip_id = i;
    ASSERT_EQ(io(a.vm, KVM_GET_IRQCHIP, &chips[i]), 0);
  }
  // A fresh VM with the same memory contents and state.
  IrqGuest b = irq_guest({});
  std::memcpy(b.ram, a.ram, 0x8000);
  ASSERT_EQ(io(b.vcpu, KVM_SET_SREGS, &sregs), 0);
  ASSERT_EQ(io(b.vcpu, KVM_SET_REGS, &regs), 0);
  ASSERT_EQ(io(b.vcpu, KVM_SET_LAPIC, &lapic), 0);
  ASSERT_EQ(io(b.vcpu, KVM_SET_VCPU_EVENTS, &ev), 0);
  ASSERT_EQ(io(b.vm, KVM_SET_PIT2, &pit), 0);
  for (auto& c : chips) ASSERT_EQ(io(b.vm, KVM_SET_IRQCHIP, &c), 0);
  kvm_irqchip check{};
  check.chip_id = KVM_IRQCHIP_PIC_MASTER;
  ASSERT_EQ(io(b.vm, KVM_GET_IRQCHIP, &check), 0);
  EXPECT_EQ(std::memcmp(&check, &chips[0], sizeof(check)), 0);
  kvm_pit_state2 pit_back;
  ASSERT_EQ(io(b.vm, KVM_GET_PIT2, &pit_back), 0);
  if (on_linux()) {  // Linux reloads each count at SET time (pit_load_count)
    for (int i = 0; i < 3; ++i) pit_back.channels[i].count_load_time = pit.channels[i].count_load_time;
  }
  EXPECT_EQ(std::memcmp(&pit_back, &pit, sizeof(pit)), 0);
  // The restored guest ticks on from where it was.
  for (uint16_t want = 3; want <= 4; ++want) {
    ASSERT_EQ(run_to_out(b, port, value), 0);
    EXPECT_EQ(port, 0x10);
    EXPECT_EQ(value, want);
  }
}

}  // namespace
}  // namespace abitest
