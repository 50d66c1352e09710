*** Settings ***
Documentation       The events a chat product's revenue depends on: the user sees the agent start,
...                 think, use tools and finish, quickly, on every run.
Resource            ../../resources/agent_chat.resource
Test Tags           events    critical


*** Test Cases ***
Agent Started Arrives Within The First Event Budget
    An Authenticated User Is Connected    critical-first-event
    ${run}=    User Sends A Chat Message
    ${result}=    The Agent Run Is Collected    ${run}
    Run Should Meet Time Budgets    ${result}
    Run Should Start And End Once    ${result}

Agent Completed Arrives Exactly Once With A Result
    An Authenticated User Is Connected    critical-completed
    ${result}=    User Chats And The Agent Answers Correctly
    Get Run Event Count    ${result}    agent_completed    ==    1
    ${completed}=    Get Run Events    ${result}    agent_completed
    Get Event Field    ${completed}[0]    result    !=    ${None}

Tool Results Reach The User
    An Authenticated User Is Connected    critical-tools
    ${result}=    User Chats And The Agent Answers Correctly
    ${completed}=    Get Run Events    ${result}    tool_completed
    Should Not Be Empty    ${completed}    msg=No tool_completed event reached the user
    Get Event Field    ${completed}[0]    duration_ms    >=    0
