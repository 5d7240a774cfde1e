(* xcpbuild probe driver: turns upstream's copy path into an export endpoint.

   Usage: probe_driver PORT FILE [REQUESTS]

   Listens on 127.0.0.1:PORT, prints "probe-ready PORT" once listening, then
   serves REQUESTS (default 1) HTTP GETs one after another: a 200 with the
   file's Content-Length, then the body through upstream [Channels.of_raw_fd]
   and [copy_from], exactly the way vhd-tool streams a disk to a client. Any
   exception is printed (Printexc) to stderr and the driver exits 2, as
   vhd-tool dies under XAPI. *)

open Lwt.Infix

let read_request fd =
  (* Read until the blank line that ends the request head; the body is empty. *)
  let buf = Bytes.create 4096 in
  let rec loop acc =
    Lwt_unix.read fd buf 0 (Bytes.length buf) >>= fun n ->
    if n = 0 then Lwt.fail End_of_file
    else
      let acc = acc ^ Bytes.sub_string buf 0 n in
      let rec has_end i =
        i + 3 < String.length acc
        && (String.sub acc i 4 = "\r\n\r\n" || has_end (i + 1))
      in
      if has_end 0 then Lwt.return acc else loop acc
  in
  loop ""

let serve_one listener path =
  Lwt_unix.accept listener >>= fun (fd, _) ->
  read_request fd >>= fun _request ->
  Lwt_unix.openfile path [ Unix.O_RDONLY ] 0 >>= fun file ->
  Lwt_unix.LargeFile.fstat file >>= fun st ->
  let size = st.Unix.LargeFile.st_size in
  Channels.of_raw_fd fd >>= fun chan ->
  let head =
    Printf.sprintf
      "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: %Ld\r\nConnection: close\r\n\r\n"
      size
  in
  chan.Channels.really_write (Cstruct.of_string head) >>= fun () ->
  chan.Channels.copy_from file size >>= fun copied ->
  Printf.printf "probe-served %Ld bytes\n%!" copied;
  Lwt_unix.close file >>= fun () -> chan.Channels.close ()

let main port path requests =
  let listener = Lwt_unix.socket Unix.PF_INET Unix.SOCK_STREAM 0 in
  Lwt_unix.setsockopt listener Unix.SO_REUSEADDR true;
  Lwt_unix.bind listener (Unix.ADDR_INET (Unix.inet_addr_loopback, port)) >>= fun () ->
  Lwt_unix.listen listener 8;
  Printf.printf "probe-ready %d\n%!" port;
  let rec loop n = if n = 0 then Lwt.return_unit else serve_one listener path >>= fun () -> loop (n - 1) in
  loop requests

let () =
  (* A client that hangs up must surface as EPIPE, not kill us silently. *)
  Sys.set_signal Sys.sigpipe Sys.Signal_ignore;
  let port, path, requests =
    match Array.to_list Sys.argv with
    | [ _; port; path ] -> (int_of_string port, path, 1)
    | [ _; port; path; n ] -> (int_of_string port, path, int_of_string n)
    | _ ->
        prerr_endline "usage: probe_driver PORT FILE [REQUESTS]";
        exit 64
  in
  try Lwt_main.run (main port path requests)
  with exn ->
    Printf.eprintf "probe_driver: %s\n%!" (Printexc.to_string exn);
    exit 2
