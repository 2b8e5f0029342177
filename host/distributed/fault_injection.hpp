// A test hook that makes one rank fail on purpose, to check that the others end with an error
// naming it: LOOM_FAULT_INJECTION="rank=1,step=3,mode=exit" makes rank 1 exit (status 3) right
// after optimizer step 3; mode=hang makes it sleep forever instead. Unset: does nothing.
#pragma once

#include <cstdint>
#include <string>

namespace loom {

class FaultInjection {
 public:
  static FaultInjection from_environment();  // throws UserError on a malformed value

  // Called after each optimizer step (`step` = steps completed).
  void after_step(int rank, std::int64_t step) const;

 private:
  bool armed_ = false;
  int rank_ = -1;
  std::int64_t step_ = -1;
  std::string mode_ = "exit";  // exit | hang
};

}  // namespace loom
