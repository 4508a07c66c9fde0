"""Reference solution of the system_dashboard task (never shown to a model): validates its checks."""

import os
import platform
import socket
import time
from http.server import BaseHTTPRequestHandler, HTTPServer


def stats():
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    return {
        "host name": socket.gethostname(),
        "Python version": platform.python_version(),
        "CPU count": os.cpu_count(),
        "load average": f"{load:.2f}",
        "time": time.strftime("%H:%M:%S"),
    }


def page(values):
    rows = "".join(f"<tr><td>{k}</td><td>{v}</td></tr>" for k, v in values.items())
    return f'<html><head><meta http-equiv="refresh" content="5"></head><body><table>{rows}</table></body></html>'


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        data = page(stats()).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.end_headers()
        self.wfile.write(data)


if __name__ == "__main__":
    HTTPServer(("127.0.0.1", int(os.environ.get("PORT", 8000))), Handler).serve_forever()
