//! Just enough of an NBD client (fixed newstyle, `NBD_OPT_GO`, simple replies) to time the
//! first read of a server that is starting and to send the callgrind runs an exact number of
//! reads.

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;

const NBD_MAGIC: u64 = 0x4e42_444d_4147_4943; // "NBDMAGIC"
const IHAVEOPT: u64 = 0x4948_4156_454f_5054;
const NBD_OPT_GO: u32 = 7;
const NBD_REP_MAGIC: u64 = 0x0003_e889_0455_65a9;
const NBD_REP_ACK: u32 = 1;
const NBD_REQUEST_MAGIC: u32 = 0x2560_9513;
const NBD_SIMPLE_REPLY_MAGIC: u32 = 0x6744_6698;
const NBD_CMD_READ: u16 = 0;
const NBD_CMD_WRITE: u16 = 1;
const NBD_CMD_DISC: u16 = 2;

/// Just enough of a client to time the first read and to send an exact number of reads.
pub struct NbdClient {
    sock: UnixStream,
    cookie: u64,
}

impl NbdClient {
    pub fn connect(socket: &Path) -> io::Result<NbdClient> {
        let mut sock = UnixStream::connect(socket)?;
        let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_string());
        let mut greeting = [0u8; 18];
        sock.read_exact(&mut greeting)?;
        if greeting[..8] != NBD_MAGIC.to_be_bytes() || greeting[8..16] != IHAVEOPT.to_be_bytes() {
            return Err(bad("not a newstyle NBD server"));
        }
        let server_flags = u16::from_be_bytes([greeting[16], greeting[17]]);
        // FIXED_NEWSTYLE and NO_ZEROES, as far as the server offers them.
        sock.write_all(&(u32::from(server_flags) & 3).to_be_bytes())?;
        // NBD_OPT_GO: the default export (empty name), no information requests.
        let mut option = Vec::with_capacity(22);
        option.extend_from_slice(&IHAVEOPT.to_be_bytes());
        option.extend_from_slice(&NBD_OPT_GO.to_be_bytes());
        option.extend_from_slice(&6u32.to_be_bytes());
        option.extend_from_slice(&0u32.to_be_bytes());
        option.extend_from_slice(&0u16.to_be_bytes());
        sock.write_all(&option)?;
        loop {
            let mut header = [0u8; 20];
            sock.read_exact(&mut header)?;
            let magic = u64::from_be_bytes(header[..8].try_into().unwrap());
            let kind = u32::from_be_bytes(header[12..16].try_into().unwrap());
            let len = u32::from_be_bytes(header[16..20].try_into().unwrap());
            let mut data = vec![0u8; len as usize];
            sock.read_exact(&mut data)?;
            if magic != NBD_REP_MAGIC {
                return Err(bad("bad option reply"));
            }
            if kind == NBD_REP_ACK {
                return Ok(NbdClient { sock, cookie: 0 });
            }
            if kind & 0x8000_0000 != 0 {
                return Err(bad("the server refused NBD_OPT_GO"));
            }
        }
    }

    fn request(&mut self, command: u16, offset: u64, len: u32) -> io::Result<()> {
        self.cookie += 1;
        let mut req = [0u8; 28];
        req[..4].copy_from_slice(&NBD_REQUEST_MAGIC.to_be_bytes());
        req[6..8].copy_from_slice(&command.to_be_bytes());
        req[8..16].copy_from_slice(&self.cookie.to_be_bytes());
        req[16..24].copy_from_slice(&offset.to_be_bytes());
        req[24..28].copy_from_slice(&len.to_be_bytes());
        self.sock.write_all(&req)
    }

    pub fn read(&mut self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.request(NBD_CMD_READ, offset, buf.len() as u32)?;
        self.reply()?;
        self.sock.read_exact(buf)
    }

    pub fn write(&mut self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.request(NBD_CMD_WRITE, offset, buf.len() as u32)?;
        self.sock.write_all(buf)?;
        self.reply()
    }

    /// A simple reply's header, checked.
    fn reply(&mut self) -> io::Result<()> {
        let mut reply = [0u8; 16];
        self.sock.read_exact(&mut reply)?;
        let magic = u32::from_be_bytes(reply[..4].try_into().unwrap());
        let error = u32::from_be_bytes(reply[4..8].try_into().unwrap());
        if magic != NBD_SIMPLE_REPLY_MAGIC || reply[8..16] != self.cookie.to_be_bytes() {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "bad reply"));
        }
        if error != 0 {
            return Err(io::Error::other(format!("NBD error {error}")));
        }
        Ok(())
    }

    pub fn disconnect(mut self) {
        let _ = self.request(NBD_CMD_DISC, 0, 0);
    }
}
