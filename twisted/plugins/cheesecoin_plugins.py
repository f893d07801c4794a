# twistd plugins for CheeseCoin: only ServiceMakers live here; the services
# themselves are built by cheesecoin.tracker.tap and cheesecoin.member.tap.
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
