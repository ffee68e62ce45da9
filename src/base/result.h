// Result<T>: host-side failures are values (DESIGN.md). An Error carries a Linux
// errno; kvmapi turns it into -1/errno in exactly one place.
#pragma once
#include <cerrno>
#include <utility>
#include <variant>

namespace anykvm {

struct Error {
  int errno_value;
};

template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T v) : m_v(std::move(v)) {}
  Result(Error e) : m_v(e) {}
  bool ok() const { return m_v.index() == 0; }
  explicit operator bool() const { return ok(); }
  T& value() { return std::get<0>(m_v); }
  const T& value() const { return std::get<0>(m_v); }
  T& operator*() { return value(); }
  T* operator->() { return &value(); }
  int error() const { return std::get<1>(m_v).errno_value; }

 private:
  std::variant<T, Error> m_v;
};

template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;
  Result(Error e) : m_err(e.errno_value) {}
  bool ok() const { return m_err == 0; }
  explicit operator bool() const { return ok(); }
  int error() const { return m_err; }

 private:
  int m_err = 0;
};

inline Error err(int e) { return Error{e}; }

}  // namespace anykvm
