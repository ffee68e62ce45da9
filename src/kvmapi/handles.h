// Objects behind our fds and the fd table. Internal to kvmapi.
#pragma once
#include <sys/types.h>

#include <memory>

#include "kvmapi/kvmapi.h"
#include "machine/vm.h"

namespace anykvm::kvmapi {

struct Handle {
  FdKind kind;
  pid_t owner;  // the process that created it; VM/vCPU ioctls from a fork child get EIO
  std::shared_ptr<machine::Vm> vm;
  std::shared_ptr<machine::Vcpu> vcpu;
};

std::shared_ptr<Handle> lookup(int fd);
int install(std::shared_ptr<Handle> h, int fd);

// Handlers by fd kind (kvmapi.cpp, vcpu_ioctls.cpp).
long vcpu_ioctl(Handle& h, uint32_t request, unsigned long arg);

}  // namespace anykvm::kvmapi
