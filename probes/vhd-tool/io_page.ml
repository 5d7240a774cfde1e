(* xcpbuild probe shim: the part of io-page that upstream IO.alloc uses
   (io-page is not packaged in Debian). Pages are plain 4 KiB bigarrays; the
   probe never needs their alignment. *)
type t = Cstruct.buffer

let page_size = 4096

let get n = Bigarray.(Array1.create char c_layout (n * page_size))

let to_cstruct (t : t) = Cstruct.of_bigarray t
