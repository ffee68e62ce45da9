// The in-kernel irqchip ioctls (Documentation/virt/kvm/api.rst 4.24-4.27,
// 4.52, 4.59-4.60, 4.70-4.71, 4.75-4.76, 4.93): VM rows of ioctls.def whose
// handlers live here, and the vCPU LAPIC rows. Argument checks and errno in
// Linux 6.1's order (arch/x86/kvm/x86.c kvm_arch_vm_ioctl, virt/kvm/kvm_main.c,
// eventfd.c, irqchip.c, irq_comm.c kvm_set_routing_entry).
#include <linux/kvm.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "kvmapi/handles.h"
#include "kvmapi/usercopy.h"

namespace anykvm::kvmapi {

using machine::Irqchip;
using machine::IrqchipMode;

static_assert(sizeof(devices::PicChipState) == sizeof(kvm_pic_state));
static_assert(sizeof(devices::IoapicState) == sizeof(kvm_ioapic_state));
static_assert(sizeof(devices::LapicState) == sizeof(kvm_lapic_state));
static_assert(sizeof(devices::PitState) == sizeof(kvm_pit_state2));

namespace {

Irqchip* full_irqchip(Handle& h) {
  Irqchip* c = h.vm->irqchip();
  return c && c->full() ? c : nullptr;
}

}  // namespace

long enable_split_irqchip(Handle& h, uint64_t pins) {
  if (pins > machine::k_max_gsi) return -EINVAL;  // MAX_NR_RESERVED_IOAPIC_PINS
  if (h.vm->irqchip() || h.vm->vcpu_count()) return -EEXIST;
  auto r = h.vm->create_irqchip(IrqchipMode::Split);
  return r ? 0 : -(r.error() == EINVAL ? EEXIST : r.error());
}

long ioctl_Vm_CREATE_IRQCHIP(Handle& h, unsigned long) {
  auto r = h.vm->create_irqchip(IrqchipMode::Kernel);
  return r ? 0 : -r.error();
}

namespace {
long irq_line(Handle& h, unsigned long arg, bool status) {
  kvm_irq_level l;
  if (!copy_from_user(&l, arg, sizeof(l))) return -EFAULT;
  Irqchip* c = h.vm->irqchip();
  if (!c) return -ENXIO;  // kvm_vm_ioctl_irq_line
  int st = c->set_irq(l.irq, l.level != 0);
  if (status) {
    l.status = st;
    if (!copy_to_user(arg, &l, sizeof(l))) return -EFAULT;
  }
  return 0;
}
}  // namespace

long ioctl_Vm_IRQ_LINE(Handle& h, unsigned long arg) { return irq_line(h, arg, false); }
long ioctl_Vm_IRQ_LINE_STATUS(Handle& h, unsigned long arg) { return irq_line(h, arg, true); }

long ioctl_Vm_GET_IRQCHIP(Handle& h, unsigned long arg) {
  kvm_irqchip chip;
  if (!copy_from_user(&chip, arg, sizeof(chip))) return -EFAULT;
  Irqchip* c = full_irqchip(h);
  if (!c) return -ENXIO;
  switch (chip.chip_id) {
    case KVM_IRQCHIP_PIC_MASTER:
    case KVM_IRQCHIP_PIC_SLAVE: {
      devices::PicChipState s = c->get_pic(devices::PicPair::Chip(chip.chip_id));
      std::memcpy(&chip.chip.pic, &s, sizeof(s));
      break;
    }
    case KVM_IRQCHIP_IOAPIC: {
      devices::IoapicState s = c->get_ioapic();
      std::memcpy(&chip.chip.ioapic, &s, sizeof(s));
      break;
    }
    default: return -EINVAL;
  }
  return copy_to_user(arg, &chip, sizeof(chip)) ? 0 : -EFAULT;
}

long ioctl_Vm_SET_IRQCHIP(Handle& h, unsigned long arg) {
  kvm_irqchip chip;
  if (!copy_from_user(&chip, arg, sizeof(chip))) return -EFAULT;
  Irqchip* c = full_irqchip(h);
  if (!c) return -ENXIO;
  switch (chip.chip_id) {
    case KVM_IRQCHIP_PIC_MASTER:
    case KVM_IRQCHIP_PIC_SLAVE: {
      devices::PicChipState s;
      std::memcpy(&s, &chip.chip.pic, sizeof(s));
      c->set_pic(devices::PicPair::Chip(chip.chip_id), s);
      return 0;
    }
    case KVM_IRQCHIP_IOAPIC: {
      devices::IoapicState s;
      std::memcpy(&s, &chip.chip.ioapic, sizeof(s));
      c->set_ioapic(s);
      return 0;
    }
    default: return -EINVAL;
  }
}

long ioctl_Vm_CREATE_PIT2(Handle& h, unsigned long arg) {
  kvm_pit_config cfg;
  if (!copy_from_user(&cfg, arg, sizeof(cfg))) return -EFAULT;
  // Linux creates a PIT without an irqchip too (its ticks then go nowhere);
  // ours lives in the irqchip, so that case is refused (docs/abi-differences.md).
  Irqchip* c = full_irqchip(h);
  if (!c) return -ENXIO;
  auto r = c->create_pit(cfg.flags & KVM_PIT_SPEAKER_DUMMY);
  return r ? 0 : -r.error();
}

long ioctl_Vm_GET_PIT2(Handle& h, unsigned long arg) {
  Irqchip* c = h.vm->irqchip();
  if (!c || !c->has_pit()) return -ENXIO;
  devices::PitState s = c->get_pit();
  kvm_pit_state2 k;
  std::memcpy(&k, &s, sizeof(k));
  return copy_to_user(arg, &k, sizeof(k)) ? 0 : -EFAULT;
}

long ioctl_Vm_SET_PIT2(Handle& h, unsigned long arg) {
  kvm_pit_state2 k;
  if (!copy_from_user(&k, arg, sizeof(k))) return -EFAULT;
  Irqchip* c = h.vm->irqchip();
  if (!c || !c->has_pit()) return -ENXIO;
  devices::PitState s;
  std::memcpy(&s, &k, sizeof(s));
  c->set_pit(s);
  return 0;
}

long ioctl_Vm_REINJECT_CONTROL(Handle& h, unsigned long arg) {
  kvm_reinject_control rc;
  if (!copy_from_user(&rc, arg, sizeof(rc))) return -EFAULT;
  Irqchip* c = h.vm->irqchip();
  if (!c || !c->has_pit()) return -ENXIO;
  c->set_pit_reinject(rc.pit_reinject != 0);
  return 0;
}

long ioctl_Vm_SET_GSI_ROUTING(Handle& h, unsigned long arg) {
  kvm_irq_routing hdr;
  if (!copy_from_user(&hdr, arg, anykvm_off_irq_routing_entries)) return -EFAULT;
  Irqchip* c = h.vm->irqchip();
  if (!c) return -EINVAL;  // kvm_arch_can_set_irq_routing
  if (hdr.nr > machine::k_max_gsi) return -EINVAL;  // KVM_MAX_IRQ_ROUTES
  if (hdr.flags) return -EINVAL;
  std::vector<kvm_irq_routing_entry> e(hdr.nr);
  if (!copy_from_user(e.data(), arg + anykvm_off_irq_routing_entries, e.size() * sizeof(e[0]))) return -EFAULT;
  for (const auto& x : e)
    if (x.gsi >= machine::k_max_gsi) return -EINVAL;
  std::vector<machine::GsiRoute> routes;
  for (const auto& x : e) {
    if (x.type == KVM_IRQ_ROUTING_MSI ? (x.flags & ~KVM_MSI_VALID_DEVID) : x.flags) return -EINVAL;
    machine::GsiRoute r;
    r.gsi = x.gsi;
    if (x.type == KVM_IRQ_ROUTING_IRQCHIP) {
      if (!c->full()) return -EINVAL;
      r.kind = machine::GsiRoute::Kind::Irqchip;
      r.pin = x.u.irqchip.pin;
      switch (x.u.irqchip.irqchip) {
        case KVM_IRQCHIP_PIC_MASTER:
        case KVM_IRQCHIP_PIC_SLAVE:
          if (x.u.irqchip.pin >= 8) return -EINVAL;
          break;
        case KVM_IRQCHIP_IOAPIC:
          if (x.u.irqchip.pin >= KVM_IOAPIC_NUM_PINS) return -EINVAL;
          break;
        default: return -EINVAL;
      }
      r.chip = machine::IrqchipId(x.u.irqchip.irqchip);
    } else if (x.type == KVM_IRQ_ROUTING_MSI) {
      r.kind = machine::GsiRoute::Kind::Msi;
      r.msi_address = (uint64_t(x.u.msi.address_hi) << 32) | x.u.msi.address_lo;
      r.msi_data = x.u.msi.data;
    } else {
      return -EINVAL;  // HV_SINT / Xen event channels are not served
    }
    // setup_routing_entry: one route per (GSI, irqchip), and a non-irqchip
    // route must be the GSI's only one.
    for (const machine::GsiRoute& o : routes) {
      if (o.gsi != r.gsi) continue;
      if (o.kind != r.kind || r.kind != machine::GsiRoute::Kind::Irqchip || o.chip == r.chip) return -EINVAL;
    }
    routes.push_back(r);
  }
  c->set_routing(std::move(routes));
  return 0;
}

long ioctl_Vm_SIGNAL_MSI(Handle& h, unsigned long arg) {
  kvm_msi m;
  if (!copy_from_user(&m, arg, sizeof(m))) return -EFAULT;
  Irqchip* c = h.vm->irqchip();
  if (!c || (m.flags & ~KVM_MSI_VALID_DEVID)) return -EINVAL;
  // kvm_set_msi's value is the ioctl's: deliveries, 0 coalesced, or -1
  // (which the caller sees as errno EPERM, as on Linux).
  return c->signal_msi((uint64_t(m.address_hi) << 32) | m.address_lo, m.data);
}

long ioctl_Vm_IRQFD(Handle& h, unsigned long arg) {
  kvm_irqfd a;
  if (!copy_from_user(&a, arg, sizeof(a))) return -EFAULT;
  if (a.flags & ~(KVM_IRQFD_FLAG_DEASSIGN | KVM_IRQFD_FLAG_RESAMPLE)) return -EINVAL;
  Irqchip* c = h.vm->irqchip();
  const bool deassign = a.flags & KVM_IRQFD_FLAG_DEASSIGN;
  const bool resample = a.flags & KVM_IRQFD_FLAG_RESAMPLE;
  if (!deassign) {
    // kvm_arch_irqfd_allowed: resample needs the full in-kernel irqchip.
    if (!c || (resample && !c->full())) return -EINVAL;
  } else if (!c) {
    return 0;  // nothing can be registered: kvm_irqfd_deassign still returns 0
  }
  std::optional<int> rfd;
  if (resample && !deassign) rfd = int(a.resamplefd);
  return c->irqfd(int(a.fd), a.gsi, deassign, rfd);
}

long ioctl_Vm_IOEVENTFD(Handle& h, unsigned long arg) {
  kvm_ioeventfd a;
  if (!copy_from_user(&a, arg, sizeof(a))) return -EFAULT;
  // kvm_ioeventfd / kvm_assign_ioeventfd / kvm_deassign_ioeventfd. Served
  // with or without an in-kernel irqchip, as Linux.
  if (a.flags & ~uint32_t(KVM_IOEVENTFD_VALID_FLAG_MASK)) return -EINVAL;
  machine::Ioeventfds::Args x;
  // ioeventfd_bus_from_flags: PIO first, then the (s390) CCW notify bus,
  // which exists but nothing ever writes to on x86.
  x.bus = (a.flags & KVM_IOEVENTFD_FLAG_PIO)                ? machine::IoBus::Pio
          : (a.flags & KVM_IOEVENTFD_FLAG_VIRTIO_CCW_NOTIFY) ? machine::IoBus::VirtioCcwNotify
                                                             : machine::IoBus::Mmio;
  x.addr = a.addr;
  x.len = a.len;
  if (a.flags & KVM_IOEVENTFD_FLAG_DATAMATCH) x.datamatch = a.datamatch;
  x.fd = a.fd;
  if (a.flags & KVM_IOEVENTFD_FLAG_DEASSIGN) return h.vm->ioeventfds().deassign(x);
  switch (a.len) {
    case 0: case 1: case 2: case 4: case 8: break;
    default: return -EINVAL;
  }
  if (a.addr + a.len < a.addr) return -EINVAL;
  if (!a.len && (a.flags & KVM_IOEVENTFD_FLAG_DATAMATCH)) return -EINVAL;
  return h.vm->ioeventfds().assign(x);
}

// ---- vCPU ----

long ioctl_Vcpu_GET_LAPIC(Handle& h, unsigned long arg) {
  Irqchip* c = h.vm->irqchip();
  if (!c || !h.vcpu->irq) return -EINVAL;  // !lapic_in_kernel
  devices::LapicState s = c->get_lapic(*h.vcpu->irq);
  return copy_to_user(arg, &s, sizeof(s)) ? 0 : -EFAULT;
}

long ioctl_Vcpu_SET_LAPIC(Handle& h, unsigned long arg) {
  Irqchip* c = h.vm->irqchip();
  if (!c || !h.vcpu->irq) return -EINVAL;
  devices::LapicState s;
  if (!copy_from_user(&s, arg, sizeof(s))) return -EFAULT;
  c->set_lapic(*h.vcpu->irq, s);
  return 0;
}

long ioctl_Vcpu_TPR_ACCESS_REPORTING(Handle&, unsigned long arg) {
  kvm_tpr_access_ctl t;
  if (!copy_from_user(&t, arg, sizeof(t))) return -EFAULT;
  if (t.flags) return -EINVAL;
  // Accepted; KVM_EXIT_TPR_ACCESS is never produced (docs/abi-differences.md).
  return copy_to_user(arg, &t, sizeof(t)) ? 0 : -EFAULT;
}

long ioctl_Vcpu_SET_VAPIC_ADDR(Handle& h, unsigned long arg) {
  if (!h.vcpu->irq) return -EINVAL;
  kvm_vapic_addr va;
  if (!copy_from_user(&va, arg, sizeof(va))) return -EFAULT;
  return 0;  // stored nowhere: the vAPIC page is not kept in sync (docs/abi-differences.md)
}

}  // namespace anykvm::kvmapi
