# twistd plugins for CheeseCoin: only ServiceMakers live here, so that listing the
# plugins imports nothing of CheeseCoin. A ServiceMaker reads Options and makeService
# from its module when the command runs: cheesecoin.tracker.tap, and cheesecoin.member.tap
# (whose Options is cheesecoin.member.options's, whose services cheesecoin.member.builder
# builds).
from twisted.application.service import ServiceMaker

cheesetracker = ServiceMaker(
    "CheeseCoin tracker",
    "cheesecoin.tracker.tap",
    "The CheeseCoin tracker: a rendezvous server where members find each other.",
    "cheesetracker",
)

cheesemember = ServiceMaker(
    "CheeseCoin member",
    "cheesecoin.member.tap",
    "A CheeseCoin member: a full node that keeps, mines and relays the cheese stack.",
    "cheesemember",
)
