(* xcpbuild probe shim: cstruct 6.1 removed [Cstruct.len]; older upstream code
   still calls it. Compiled first, then opened in every upstream file with
   [-open Cstruct_compat], so [Cstruct] there means this extended module. *)
module Cstruct = struct
  include Cstruct

  let len = length
end
