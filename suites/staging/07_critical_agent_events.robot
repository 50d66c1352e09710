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

Agent Completed Arrives Exactly Once With An Answer
    An Authenticated User Is Connected    critical-completed
    ${result}=    User Chats And The Agent Answers Correctly
    Get Run Event Count    ${result}    completed    ==    1
    ${answer}=    Get Agent Answer    ${result}
    Should Not Be Empty    ${answer}    msg=The run completed without an answer

Tool Results Reach The User
    An Authenticated User Is Connected    critical-tools
    ${result}=    User Chats And The Agent Answers Correctly
    ${calls}=    Get Tool Calls    ${result}
    FOR    ${call}    IN    @{calls}
        Should Not Be Equal    ${call}[result]    ${None}
        ...    msg=Tool ${call}[tool] (${call}[call_id]) completed without a result reaching the user: ${call}
    END
