"""A fake org.freedesktop.Notifications service (the desktop's notification daemon) on the
session bus, to run under `dbus-run-session`:

    dbus-run-session -- python -m tests.fakes.notifications COMMAND...

It serves the bus, runs COMMAND (which finds the bus through DBUS_SESSION_BUS_ADDRESS), prints
each notification it was asked to show as a JSON line, and exits with COMMAND's exit code.
D-Bus method signatures are written as dbus-fast reads them: D-Bus type strings, which
pyproject.toml lets mypy and ruff pass in this file only.
"""

import asyncio
import json
import sys

from dbus_fast.aio import MessageBus
from dbus_fast.service import ServiceInterface, method, signal


class Notifications(ServiceInterface):
    def __init__(self) -> None:
        super().__init__("org.freedesktop.Notifications")
        self.shown: list[dict[str, str]] = []

    @method()
    def Notify(
        self,
        app_name: "s",
        replaces_id: "u",
        app_icon: "s",
        summary: "s",
        body: "s",
        actions: "as",
        hints: "a{sv}",
        expire_timeout: "i",
    ) -> "u":
        self.shown.append({"app": app_name, "summary": summary, "body": body})
        return len(self.shown)

    @method()
    def GetCapabilities(self) -> "as":
        return ["body"]

    @method()
    def GetServerInformation(self) -> "ssss":
        return ["fake", "mailbeacon tests", "1.0", "1.2"]

    @method()
    def CloseNotification(self, notification_id: "u") -> None:
        pass

    @signal()
    def NotificationClosed(self) -> "uu":
        return [0, 0]

    @signal()
    def ActionInvoked(self) -> "us":
        return [0, ""]


async def main(command: list[str]) -> int:
    bus = await MessageBus().connect()
    service = Notifications()
    bus.export("/org/freedesktop/Notifications", service)
    await bus.request_name("org.freedesktop.Notifications")
    child = await asyncio.create_subprocess_exec(*command)
    code = await child.wait()
    for shown in service.shown:
        print(json.dumps(shown), flush=True)
    return code


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1:])))
